"""Unit fields set by other scripts through attributes of the host's processing object (reference §1.5).

Two users:
* the X/Y/Z plot: each ControlNet axis sets one `control_net_*` attribute on the cell's processing object and
  marks it with `control_net_xyz` (the reference instead switched the user's "Allow other script to control
  this extension" setting on for good, and left it on);
* scripts written for the reference's "remote call" (allowed by that setting): a scalar applies to every unit,
  a list gives one value per unit, `control_net_enabled` as a scalar applies to unit 0 only.

Every value goes through `Unit` validation, so a bad one fails the generation naming the unit and the field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..enums import ControlMode, ResizeMode, UnionControlType
from ..errors import ControlNetError, InputError
from .unit import Unit

XYZ_MARK = "control_net_xyz"  # set by our X/Y/Z axes: overrides apply without the setting

# processing-object attribute -> unit field (the reference's names)
ATTRIBUTES = {
    "control_net_enabled": "enabled",
    "control_net_module": "module",
    "control_net_model": "model",
    "control_net_weight": "weight",
    "control_net_image": "image",
    "control_net_input_image": "image",
    "control_net_resize_mode": "resize_mode",
    "control_net_lowvram": "low_vram",
    "control_net_pres": "processor_res",
    "control_net_pthr_a": "threshold_a",
    "control_net_pthr_b": "threshold_b",
    "control_net_guidance_start": "guidance_start",
    "control_net_guidance_end": "guidance_end",
    "control_net_guidance_strength": "guidance_end",  # the reference's old name
    "control_net_control_mode": "control_mode",
    "control_net_pixel_perfect": "pixel_perfect",
    "control_net_union_control_type": "union_control_type",  # ours: the reference has no such attribute
}
UNIT_0_ONLY = {"control_net_enabled"}


def overrides_from(obj: Any) -> dict[str, Any]:
    """The `control_net_*` attributes set on `obj`, in ATTRIBUTES order."""
    return {name: getattr(obj, name) for name in ATTRIBUTES if getattr(obj, name, None) is not None}


def apply_overrides(units: Sequence[Unit], overrides: Mapping[str, Any], *,
                    is_known_module: Callable[[str], bool] | None = None) -> list[Unit]:
    """New units with the overrides applied; InputError naming the unit and field for a bad value."""
    changes: list[dict[str, Any]] = [{} for _ in units]
    for name, value in overrides.items():
        field = ATTRIBUTES[name]
        if isinstance(value, (list, tuple)):
            if len(value) > len(units):
                raise InputError(f"{name} has {len(value)} values for {len(units)} units", field=field)
            for i, v in enumerate(value):
                changes[i][field] = v
        elif name in UNIT_0_ONLY:
            if units:
                changes[0][field] = value
        else:
            for change in changes:
                change[field] = value
    out = []
    for index, (unit, change) in enumerate(zip(units, changes)):
        if not change:
            out.append(unit)
            continue
        if "module" in change and "union_control_type" not in change:
            # the union task the panel took from its Control Type radio belongs to the old preprocessor: let
            # the new one's tags decide (generation.prepare_units) rather than run a depth map as Hard Edge
            change["union_control_type"] = UnionControlType.UNKNOWN
        values = {**unit.to_dict(), "is_ui": unit.is_ui, **change}
        out.append(Unit.from_dict(values, index=index, is_known_module=is_known_module))
    return out


# --- X/Y/Z plot axes -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Axis:
    label: str  # the reference's axis label, so saved X/Y/Z presets keep working
    attribute: str
    kind: type  # what the X/Y/Z script parses the typed values as
    choices: str | None = None  # "models", "modules", or an enum's values

    @property
    def field(self) -> str:
        return ATTRIBUTES[self.attribute]


AXES = (
    Axis("[ControlNet] Enabled", "control_net_enabled", str, "booleans"),
    Axis("[ControlNet] Model", "control_net_model", str, "models"),
    Axis("[ControlNet] Weight", "control_net_weight", float),
    Axis("[ControlNet] Guidance Start", "control_net_guidance_start", float),
    Axis("[ControlNet] Guidance End", "control_net_guidance_end", float),
    Axis("[ControlNet] Control Mode", "control_net_control_mode", str, "control_modes"),
    Axis("[ControlNet] Resize Mode", "control_net_resize_mode", str, "resize_modes"),
    Axis("[ControlNet] Preprocessor", "control_net_module", str, "modules"),
    Axis("[ControlNet] Pre Resolution", "control_net_pres", int),
    Axis("[ControlNet] Pre Threshold A", "control_net_pthr_a", float),
    Axis("[ControlNet] Pre Threshold B", "control_net_pthr_b", float),
    Axis("[ControlNet] Union Control Type", "control_net_union_control_type", str, "union_types"),
)


def axis_choices(axis: Axis, *, models: Callable[[], list[str]], modules: Callable[[], list[str]]) -> list[str] | None:
    if axis.choices == "models":
        return models()
    if axis.choices == "modules":
        return modules()
    if axis.choices == "booleans":
        return ["True", "False"]
    if axis.choices == "control_modes":
        return [m.value for m in ControlMode]
    if axis.choices == "resize_modes":
        return [m.value for m in ResizeMode]
    if axis.choices == "union_types":
        return [m.value for m in UnionControlType]
    return None


def check_axis_values(axis: Axis, values: Sequence[Any], *,
                      is_known_module: Callable[[str], bool] | None = None) -> None:
    """Before the grid starts: every value must make a valid unit field (InputError naming the axis)."""
    for value in values:
        try:
            Unit.from_dict({"enabled": True, axis.field: value}, is_known_module=is_known_module)
        except InputError as exc:
            raise InputError(f"X/Y/Z axis {axis.label}: {value!r}: {exc.message}", field=axis.field) from None


def check_axis_cells(axis: Axis, values: Sequence[Any], units: Sequence[Unit], *,
                     is_known_module: Callable[[str], bool] | None = None,
                     check_unit: Callable[[Unit], None] | None = None) -> None:
    """Before the grid starts, with the units as sent: each value applied to them must give units that can run
    (`check_unit(unit)` raises for an enabled unit that cannot, e.g. an unknown model). The X/Y/Z script only
    prints an error raised inside a cell and plots a blank one under HTTP 200, so what can be caught here is.
    With no unit enabled only the Enabled axis makes sense: any other would plot the same image everywhere."""
    check_axis_values(axis, values, is_known_module=is_known_module)
    if axis.attribute != "control_net_enabled" and not any(u.enabled for u in units):
        raise InputError(f"X/Y/Z axis {axis.label}: no ControlNet unit is enabled, so the axis would change nothing; "
                         "enable a unit (or plot \"[ControlNet] Enabled\")", field="enabled")
    for value in values:
        try:
            for index, unit in enumerate(apply_overrides(units, {axis.attribute: value},
                                                         is_known_module=is_known_module)):
                if unit.enabled and check_unit is not None:
                    try:
                        check_unit(unit)
                    except ControlNetError as exc:
                        raise exc.at(unit=index) from None
        except ControlNetError as exc:
            raise InputError(f"X/Y/Z axis {axis.label}: {value!r}: {exc.message}", unit=exc.unit,
                             field=exc.field) from None


def set_axis_value(obj: Any, axis: Axis, value: Any) -> None:
    """What an axis does to the cell's processing object."""
    setattr(obj, axis.attribute, value)
    setattr(obj, XYZ_MARK, True)
