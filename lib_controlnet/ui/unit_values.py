"""A unit's panel values <-> the `Unit` the Script's `process()` and the API accept: one serialisation.

The panel hands its widget values to `unit_payload`, which builds exactly the dict an API client would send
(field names of `Unit`, the preprocessor's canonical name), and `Unit.from_dict` validates it. `panel_values`
goes the other way (a unit pasted from infotext, or a test), giving the value each widget shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lib_controlnet.enums import HiResFixOption
from lib_controlnet.errors import ControlNetError
from lib_controlnet.preprocessors import Registry
from lib_controlnet.units.unit import SLIDER_DEFAULT, Unit

from .compat import image_and_mask

# The widget values a unit is made of, in the order the panel passes them to its event handlers.
VALUE_KEYS = (
    "enabled",
    "low_vram",
    "pixel_perfect",
    "image",
    "upload_independent",  # img2img: use the unit's own image instead of the init image
    "module",
    "model",
    "weight",
    "guidance_start",
    "guidance_end",
    "processor_res",
    "threshold_a",
    "threshold_b",
    "control_mode",
    "resize_mode",
    "hr_option",
    "inpaint_crop_input_image",
    "union_control_type",  # hidden: set by the Control Type radio (see unit_panel)
    "pulid_mode",  # shown for a PuLID model only (the reference's rule: "pulid" in the model name)
)


def module_name(value: str, preprocessors: Registry) -> str:
    """The canonical module name for a dropdown value (a label, name or alias); unknown text is kept as is."""
    found = preprocessors.get(value)
    return found.name if found is not None else value


def module_label(value: str, preprocessors: Registry) -> str:
    found = preprocessors.get(value)
    return found.label if found is not None else value


def unit_image(image_value: Any) -> Any:
    """The unit's `image` from the image widget's value: the RGB array, or {"image", "mask"} when a mask is drawn."""
    rgb, mask = image_and_mask(image_value)
    if rgb is None:
        return None
    return rgb if mask is None else {"image": rgb, "mask": mask}


def unit_payload(values: Mapping[str, Any], *, preprocessors: Registry, tab: str) -> dict[str, Any]:
    """The API-shaped dict for the panel's values (images still arrays; see serialise for JSON)."""
    missing = [k for k in VALUE_KEYS if k not in values]
    if missing:
        raise KeyError(f"panel values lack {missing}")
    use_own_image = tab == "txt2img" or bool(values["upload_independent"])
    resolution = values["processor_res"]
    return {
        "is_ui": True,
        "enabled": bool(values["enabled"]),
        "module": module_name(values["module"], preprocessors),
        "model": values["model"],
        "weight": values["weight"],
        "image": unit_image(values["image"]) if use_own_image else None,
        "resize_mode": values["resize_mode"],
        "low_vram": bool(values["low_vram"]),
        "processor_res": int(round(resolution)) if isinstance(resolution, (int, float)) else resolution,
        "threshold_a": values["threshold_a"],
        "threshold_b": values["threshold_b"],
        "guidance_start": values["guidance_start"],
        "guidance_end": values["guidance_end"],
        "pixel_perfect": bool(values["pixel_perfect"]),
        "control_mode": values["control_mode"],
        # img2img has no hires fix: the reference forces Both there
        "hr_option": values["hr_option"] if tab == "txt2img" else HiResFixOption.BOTH.value,
        "inpaint_crop_input_image": bool(values["inpaint_crop_input_image"]),
        "union_control_type": values["union_control_type"],
        "pulid_mode": values["pulid_mode"],
    }


def unit_from_values(values: Mapping[str, Any], *, preprocessors: Registry, tab: str,
                     index: int | None = None) -> Unit:
    """The Unit for the panel's values; InputError (naming unit and field) when they are not a valid unit."""
    payload = unit_payload(values, preprocessors=preprocessors, tab=tab)
    return Unit.from_dict(payload, index=index, is_known_module=preprocessors.__contains__)


def state_value(values: Mapping[str, Any], *, preprocessors: Registry, tab: str,
                index: int | None = None) -> tuple[Unit | dict, ControlNetError | None]:
    """What the unit's gr.State holds: the Unit, or - when the values are invalid - the payload itself,
    which `process()` rejects with the same error the panel shows (never a silently stale unit)."""
    payload = unit_payload(values, preprocessors=preprocessors, tab=tab)
    try:
        return Unit.from_dict(payload, index=index, is_known_module=preprocessors.__contains__), None
    except ControlNetError as exc:
        return payload, exc


def panel_values(unit: Unit, *, preprocessors: Registry, tab: str) -> dict[str, Any]:
    """The value each widget shows for `unit` (the image widget gets the RGB image; a mask cannot be set there).
    -1 slider values (the API's "default") show as the preprocessor's default."""
    image = unit.image
    if isinstance(image, dict):
        image = image.get("image")
    found = preprocessors.get(unit.module)
    sliders = (found.resolution, found.slider_1, found.slider_2) if found is not None else (None, None, None)
    res, a, b = (
        slider.value if slider is not None and value == SLIDER_DEFAULT else value  # -1: the slider's default
        for slider, value in zip(sliders, (unit.processor_res, unit.threshold_a, unit.threshold_b))
    )
    return {
        "enabled": unit.enabled,
        "low_vram": unit.low_vram,
        "pixel_perfect": unit.pixel_perfect,
        "image": image,
        "upload_independent": tab == "txt2img" or unit.image is not None,
        "module": module_label(unit.module, preprocessors),
        "model": unit.model,
        "weight": unit.weight,
        "guidance_start": unit.guidance_start,
        "guidance_end": unit.guidance_end,
        "processor_res": int(res),
        "threshold_a": a,
        "threshold_b": b,
        "control_mode": unit.control_mode.value,
        "resize_mode": unit.resize_mode.value,
        "hr_option": unit.hr_option.value,
        "inpaint_crop_input_image": unit.inpaint_crop_input_image,
        "union_control_type": unit.union_control_type.value,
        "pulid_mode": unit.pulid_mode.value,
    }
