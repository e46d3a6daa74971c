"""With `A1111_REQUIRE=1` (set by tools/a1111_rig.sh, so in CI), tests/a1111 may skip nothing.

The rig provides everything these tests can skip for (a WebUI at A1111_URL, a ControlNet in its list, the X/Y/Z
script, Chromium), so there a skip means the rig or the server is broken, and it is reported as a failure that
says why it would have skipped. Without A1111_REQUIRE the modules skip as their docstrings say.
"""

from __future__ import annotations

import os

import pytest

REQUIRED = os.environ.get("A1111_REQUIRE") == "1"


def pytest_configure(config):
    if REQUIRED and not os.environ.get("A1111_URL"):
        raise pytest.UsageError("A1111_REQUIRE=1 but A1111_URL is not set: no WebUI to run tests/a1111 against")


@pytest.hookimpl(hookwrapper=True)
def pytest_collectreport(report):
    yield
    if REQUIRED and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"A1111_REQUIRE=1 and this module would skip: {_reason(report)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if REQUIRED and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"A1111_REQUIRE=1 and this test would skip: {_reason(report)}"


def _reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (file, line, "Skipped: reason")
        return str(longrepr[2])
    return str(longrepr)
