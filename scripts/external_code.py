"""The reference extension's public helper API, for extensions that drive ControlNet (ADetailer, AnimateDiff,
Deforum, Ultimate SD Upscale...). Same function names and arguments; units are our `Unit`, which accepts and
exposes the reference's fields, so code written against `external_code.ControlNetUnit` keeps working.

A1111 modules are imported inside the functions that need them, so this file also imports outside a WebUI.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lib_controlnet.enums import ControlMode, HiResFixOption, ResizeMode
from lib_controlnet.preprocessors import default_registry, module_detail, module_list
from lib_controlnet.units.hint_size import pixel_perfect_resolution as _pixel_perfect
from lib_controlnet.units.unit import Unit

ControlNetUnit = Unit  # the reference's class name
__all__ = [
    "ControlMode", "ControlNetUnit", "HiResFixOption", "ResizeMode", "find_cn_script", "get_all_units",
    "get_all_units_from", "get_all_units_in_processing", "get_api_version", "get_max_models_num", "get_models",
    "get_modules", "get_modules_detail", "get_single_unit_from", "is_cn_script", "pixel_perfect_resolution",
    "resize_mode_from_value", "to_processing_unit", "update_cn_script", "update_cn_script_in_place",
    "update_cn_script_in_processing",
]


def get_api_version() -> int:
    return 3


def is_cn_script(script) -> bool:
    return script is not None and script.title().lower() == "controlnet"


def find_cn_script(script_runner):
    if script_runner is None:
        return None
    return next((s for s in script_runner.alwayson_scripts if is_cn_script(s)), None)


def to_processing_unit(unit: Any, index: int | None = None) -> Unit:
    """A unit from a dict, a reference ControlNetUnit-like object or a Unit."""
    return Unit.from_dict(unit, index=index)


def get_all_units_from(script_args: Sequence[Any]) -> list[Unit]:
    return [to_processing_unit(arg, i) for i, arg in enumerate(script_args) if arg is not None]


def get_single_unit_from(script_args: Sequence[Any], index: int = 0) -> Unit | None:
    units = get_all_units_from(script_args)
    return units[index] if 0 <= index < len(units) else None


def get_all_units(script_runner, script_args: Sequence[Any]) -> list[Unit]:
    script = find_cn_script(script_runner)
    return get_all_units_from(script_args[script.args_from:script.args_to]) if script else []


def get_all_units_in_processing(p) -> list[Unit]:
    return get_all_units(p.scripts, p.script_args)


def update_cn_script(script_runner, script_args: list | tuple, units: Sequence[Any]):
    """A copy of `script_args` with our slots holding `units` (the rest of the slots disabled)."""
    script = find_cn_script(script_runner)
    if script is None:
        return script_args
    slots = script.args_to - script.args_from
    units = [to_processing_unit(u, i) for i, u in enumerate(units)][:slots]
    filled = units + [Unit() for _ in range(slots - len(units))]
    new_args = list(script_args[:script.args_from]) + filled + list(script_args[script.args_to:])
    return tuple(new_args) if isinstance(script_args, tuple) else new_args


def update_cn_script_in_processing(p, units: Sequence[Any]) -> None:
    p.script_args = update_cn_script(p.scripts, p.script_args, units)


update_cn_script_in_place = update_cn_script_in_processing  # deprecated name in the reference


def get_models(update: bool = False) -> list[str]:
    from scripts.controlnet import MODELS  # noqa: PLC0415 - needs the WebUI

    return ["None", *MODELS.list_names(refresh=update)]


def get_modules(alias_names: bool = False) -> list[str]:
    return module_list(default_registry(), alias_names)


def get_modules_detail(alias_names: bool = False) -> dict:
    return module_detail(default_registry(), alias_names)


def get_max_models_num() -> int:
    from modules import shared  # noqa: PLC0415

    from lib_controlnet.settings import read  # noqa: PLC0415

    return read(shared.opts.data, "control_net_unit_count")


def pixel_perfect_resolution(image, target_H: int, target_W: int, resize_mode) -> int:  # noqa: N803
    return _pixel_perfect(image, target_H, target_W, resize_mode_from_value(resize_mode))


def resize_mode_from_value(value) -> ResizeMode:
    """A1111's img2img resize ints (0 Just resize, 1 Crop and resize, 2 Resize and fill, 3 latent) or names."""
    if isinstance(value, int) and not isinstance(value, bool):
        return {0: ResizeMode.RESIZE, 1: ResizeMode.INNER_FIT, 2: ResizeMode.OUTER_FIT}.get(value, ResizeMode.RESIZE)
    return ResizeMode.parse(value, field="resize_mode")
