"""The error family: one message format, one status table, and the attributes host handlers read."""

import pytest

from lib_controlnet.errors import (
    ControlNetError,
    IncompatibleModelError,
    InputError,
    MissingDependencyError,
    ModelFileError,
    NotFoundError,
    UnsafeFileError,
    http_status,
)


@pytest.mark.parametrize("cls, status", [(InputError, 422), (NotFoundError, 404), (ModelFileError, 422),
                                         (UnsafeFileError, 422), (IncompatibleModelError, 422),
                                         (MissingDependencyError, 501), (ControlNetError, 500)])
def test_statuses(cls, status):
    assert http_status(cls("x")) == status
    assert http_status(ValueError("x")) == 500


def test_context_is_added_on_the_way_up_and_visible_to_a1111s_handler():
    exc = InputError("must be between 0 and 2", field="weight")
    assert str(exc) == "ControlNet field 'weight': must be between 0 and 2"
    exc.at(unit=2, field="ignored")
    assert str(exc) == "ControlNet unit 2, field 'weight': must be between 0 and 2"
    # A1111's API answers with vars(e)["status_code"] and vars(e)["detail"]
    assert vars(exc)["status_code"] == 422 and vars(exc)["detail"] == str(exc)
