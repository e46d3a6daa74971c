"""`p.control_net_*` overrides (other scripts, the X/Y/Z plot) and the X/Y/Z axes' table."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lib_controlnet.enums import ControlMode, ResizeMode, UnionControlType
from lib_controlnet.errors import InputError
from lib_controlnet.preprocessors import default_registry
from lib_controlnet.units.script_control import (
    ATTRIBUTES,
    AXES,
    XYZ_MARK,
    apply_overrides,
    axis_choices,
    check_axis_values,
    overrides_from,
    set_axis_value,
)
from lib_controlnet.units.unit import Unit

KNOWN = default_registry().__contains__


def _units():
    return [Unit.from_dict({"enabled": False, "module": "canny", "model": "a [01234567]", "weight": 0.5}),
            Unit.from_dict({"enabled": True, "module": "depth_midas", "model": "b [89abcdef]"})]


def test_scalar_applies_to_every_unit_and_list_per_unit():
    units = apply_overrides(_units(), {"control_net_weight": 0.3, "control_net_guidance_end": [0.9, 0.4]})
    assert [u.weight for u in units] == [0.3, 0.3]
    assert [u.guidance_end for u in units] == [0.9, 0.4]
    assert [u.module for u in units] == ["canny", "depth_midas"]  # the rest is kept


def test_enabled_scalar_is_unit_0_only_as_in_the_reference():
    units = apply_overrides(_units(), {"control_net_enabled": True})
    assert [u.enabled for u in units] == [True, True]
    units = apply_overrides(_units(), {"control_net_enabled": False})
    assert [u.enabled for u in units] == [False, True]


def test_enum_strings_and_old_names():
    units = apply_overrides(_units(), {"control_net_control_mode": "ControlNet is more important",
                                       "control_net_resize_mode": "Just Resize",
                                       "control_net_guidance_strength": 0.7})
    assert units[0].control_mode is ControlMode.CONTROL and units[1].resize_mode is ResizeMode.RESIZE
    assert units[0].guidance_end == 0.7


@pytest.mark.parametrize(
    ("overrides", "unit", "field"),
    [
        ({"control_net_weight": "heavy"}, 0, "weight"),
        ({"control_net_module": "no_such_preprocessor"}, 0, "module"),
        ({"control_net_guidance_start": [0.0, 0.95], "control_net_guidance_end": 0.5}, 1, "guidance_start"),
        ({"control_net_control_mode": "Sometimes"}, 0, "control_mode"),
    ],
)
def test_bad_values_name_the_unit_and_field(overrides, unit, field):
    with pytest.raises(InputError) as info:
        apply_overrides(_units(), overrides, is_known_module=KNOWN)
    assert (info.value.unit, info.value.field) == (unit, field)


def test_a_list_longer_than_the_units_is_an_error():
    with pytest.raises(InputError, match="3 values for 2 units"):
        apply_overrides(_units(), {"control_net_weight": [1, 1, 1]})


def test_overrides_are_read_from_attributes_only_when_set():
    p = SimpleNamespace(control_net_weight=0.2, control_net_model=None, seed=1)
    assert overrides_from(p) == {"control_net_weight": 0.2}


def test_axes_use_the_reference_labels_and_set_attributes():
    labels = [a.label for a in AXES]
    assert labels == ["[ControlNet] Enabled", "[ControlNet] Model", "[ControlNet] Weight",
                      "[ControlNet] Guidance Start", "[ControlNet] Guidance End", "[ControlNet] Control Mode",
                      "[ControlNet] Resize Mode", "[ControlNet] Preprocessor", "[ControlNet] Pre Resolution",
                      "[ControlNet] Pre Threshold A", "[ControlNet] Pre Threshold B",
                      "[ControlNet] Union Control Type"]  # the last one is ours
    assert all(a.attribute in ATTRIBUTES for a in AXES)
    p = SimpleNamespace()
    weight = next(a for a in AXES if a.label == "[ControlNet] Weight")
    set_axis_value(p, weight, 0.25)
    assert p.control_net_weight == 0.25 and getattr(p, XYZ_MARK) is True
    units = apply_overrides(_units(), overrides_from(p))
    assert [u.weight for u in units] == [0.25, 0.25]


def test_axis_choices_and_checks():
    by_label = {a.label: a for a in AXES}
    kw = {"models": lambda: ["None", "a [01234567]"], "modules": lambda: ["none", "canny"]}
    assert axis_choices(by_label["[ControlNet] Model"], **kw) == ["None", "a [01234567]"]
    assert axis_choices(by_label["[ControlNet] Control Mode"], **kw) == [m.value for m in ControlMode]
    assert axis_choices(by_label["[ControlNet] Weight"], **kw) is None
    check_axis_values(by_label["[ControlNet] Weight"], [0.0, 1.5, 2.0])
    with pytest.raises(InputError, match=r"\[ControlNet\] Guidance End.*1.5"):
        check_axis_values(by_label["[ControlNet] Guidance End"], [0.5, 1.5])
    with pytest.raises(InputError, match="Preprocessor"):
        check_axis_values(by_label["[ControlNet] Preprocessor"], ["canny", "nope"], is_known_module=KNOWN)


def test_union_control_type_axis_and_a_preprocessor_change():
    """A Preprocessor cell drops the union task the panel took from its radio (the new preprocessor's tags
    decide it in generation); a Union Control Type cell sets it."""
    by_label = {a.label: a for a in AXES}
    axis = by_label["[ControlNet] Union Control Type"]
    assert axis_choices(axis, models=list, modules=list) == [t.value for t in UnionControlType]
    check_axis_values(axis, ["Depth", "Tile"])
    with pytest.raises(InputError, match="Union Control Type"):
        check_axis_values(axis, ["Colour"])
    units = [Unit.from_dict({"enabled": True, "module": "canny", "model": "u", "union_control_type": "Hard Edge"})]
    (moved,) = apply_overrides(units, {"control_net_module": "depth"})
    assert moved.module == "depth" and moved.union_control_type == UnionControlType.UNKNOWN
    (both,) = apply_overrides(units, {"control_net_module": "depth", "control_net_union_control_type": "Depth"})
    assert both.union_control_type == UnionControlType.DEPTH
    (kept,) = apply_overrides(units, {"control_net_weight": 0.5})
    assert kept.union_control_type == UnionControlType.HARD_EDGE


def test_axis_cells_are_checked_against_the_units_as_sent():
    from lib_controlnet.errors import NotFoundError
    from lib_controlnet.units.script_control import check_axis_cells

    by_label = {a.label: a for a in AXES}
    units = _units()  # unit 1 enabled; unit 0 disabled
    seen = []

    def check_unit(unit):
        seen.append(unit.guidance_start)
        if unit.model == "missing [00000000]":
            raise NotFoundError("model 'missing' not found", field="model")

    check_axis_cells(by_label["[ControlNet] Guidance Start"], [0.0, 0.5], units, check_unit=check_unit)
    assert seen == [0.0, 0.5]  # the enabled unit, once per value
    units[1] = Unit.from_dict({**units[1].to_dict(), "guidance_end": 0.5})
    with pytest.raises(InputError) as info:  # 0.9 > the unit's own end: a clash only the sent units show
        check_axis_cells(by_label["[ControlNet] Guidance Start"], [0.0, 0.9], units)
    assert (info.value.unit, info.value.field) == (1, "guidance_start") and "0.9" in info.value.message
    with pytest.raises(InputError) as info:
        check_axis_cells(by_label["[ControlNet] Model"], ["missing [00000000]"], units, check_unit=check_unit)
    assert (info.value.unit, info.value.field) == (1, "model") and "[ControlNet] Model" in info.value.message


def test_axis_with_no_enabled_unit_fails_except_enabled():
    from lib_controlnet.units.script_control import check_axis_cells

    by_label = {a.label: a for a in AXES}
    disabled = [Unit.from_dict({"enabled": False, "module": "canny", "model": "a [01234567]"})]
    with pytest.raises(InputError, match="no ControlNet unit is enabled"):
        check_axis_cells(by_label["[ControlNet] Weight"], [0.0, 1.0], disabled)
    check_axis_cells(by_label["[ControlNet] Enabled"], ["True", "False"], disabled)  # plots with and without
