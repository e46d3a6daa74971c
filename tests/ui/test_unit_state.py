"""The panel's state is the unit the API accepts: panel values -> Unit -> to_dict / API JSON -> the same Unit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lib_controlnet.errors import InputError
from lib_controlnet.ui.serialise import api_payload, display_json
from lib_controlnet.ui.unit_values import VALUE_KEYS, panel_values, state_value, unit_from_values
from lib_controlnet.units.image_input import decode_unit_images
from lib_controlnet.units.unit import Unit


def _values(image=None, **changes):
    values = {
        "enabled": True, "low_vram": True, "pixel_perfect": False, "image": image, "upload_independent": False,
        "module": "canny", "model": "canny_a [de2f2560]", "weight": 0.75, "guidance_start": 0.1,
        "guidance_end": 0.8, "processor_res": 640.0, "threshold_a": 80, "threshold_b": 180,
        "control_mode": "ControlNet is more important", "resize_mode": "Resize and Fill", "hr_option": "Low res only",
        "inpaint_crop_input_image": True, "union_control_type": "Hard Edge", "pulid_mode": "Extremely style",
    }
    values.update(changes)
    assert set(values) == set(VALUE_KEYS)
    return values


def _strokes(shape) -> np.ndarray:
    """What gradio 3.41's sketch sends as the mask: white strokes on black, HxWx3."""
    mask = np.zeros((*shape[:2], 3), np.uint8)
    mask[100:140, 50:400] = 255
    return mask


def test_round_trip_through_to_dict(registry, astronaut):
    unit = unit_from_values(_values({"image": astronaut, "mask": np.zeros_like(astronaut)}), preprocessors=registry,
                            tab="txt2img")
    assert (unit.enabled, unit.low_vram, unit.module, unit.weight, unit.processor_res) == (True, True, "canny", 0.75,
                                                                                            640)
    assert (unit.resize_mode.value, unit.control_mode.value, unit.hr_option.value) == (
        "Resize and Fill", "ControlNet is more important", "Low res only")
    assert isinstance(unit.image, np.ndarray)  # an empty mask is no mask
    again = Unit.from_dict(unit.to_dict())
    assert again == unit and again.to_dict().keys() == unit.to_dict().keys()


def test_round_trip_through_api_json_keeps_pixels_and_mask(registry, astronaut):
    strokes = _strokes(astronaut.shape)
    unit = unit_from_values(_values({"image": astronaut, "mask": strokes}), preprocessors=registry, tab="txt2img")
    assert set(unit.image) == {"image", "mask"} and unit.image["mask"].ndim == 2
    wire = json.loads(json.dumps(api_payload(unit)))  # what an API client would send
    assert isinstance(wire["image"]["image"], str) and isinstance(wire["image"]["mask"], str)
    received = Unit.from_dict(wire)
    for name in ("enabled", "module", "model", "weight", "processor_res", "threshold_a", "threshold_b",
                 "guidance_start", "guidance_end", "control_mode", "resize_mode", "hr_option", "low_vram"):
        assert getattr(received, name) == getattr(unit, name), name
    sent, got = decode_unit_images(unit)[0], decode_unit_images(received)[0]
    assert np.array_equal(sent, got)
    assert np.array_equal(got[:, :, 3], strokes[:, :, 0]) and np.array_equal(got[:, :, :3], astronaut)


def test_unit_to_panel_values_and_back(registry, astronaut):
    unit = Unit.from_dict({"enabled": True, "module": "t2ia_color_grid", "model": "x", "image": astronaut,
                           "threshold_a": -1, "weight": 1.5, "pixel_perfect": True})
    values = panel_values(unit, preprocessors=registry, tab="txt2img")
    assert values["module"] == "t2ia_color_grid"  # the dropdown shows labels
    assert values["processor_res"] == 512 and values["threshold_a"] == 0.5  # -1: the slider defaults
    back = unit_from_values(values, preprocessors=registry, tab="txt2img")
    assert back.module == "color"  # the state carries the canonical name
    assert back.weight == 1.5 and back.pixel_perfect and np.array_equal(back.image, astronaut)


def test_img2img_uses_the_init_image_unless_told(registry, astronaut):
    values = _values({"image": astronaut, "mask": None})
    unit = unit_from_values(values, preprocessors=registry, tab="img2img")
    assert unit.image is None and unit.hr_option.value == "Both"  # img2img: no hires fix
    values["upload_independent"] = True
    unit = unit_from_values(values, preprocessors=registry, tab="img2img")
    assert np.array_equal(unit.image, astronaut)


def test_invalid_values_leave_the_payload_that_process_rejects(registry):
    values = _values(guidance_start=0.9, guidance_end=0.2)
    state, error = state_value(values, preprocessors=registry, tab="txt2img", index=1)
    assert isinstance(state, dict) and error is not None and error.field == "guidance_start" and error.unit == 1
    with pytest.raises(InputError) as raised:
        Unit.from_dict(state, index=1)  # what scripts/controlnet.py's process() does with the slot
    assert raised.value.field == "guidance_start"
    state, error = state_value(_values(module="no_such_module"), preprocessors=registry, tab="txt2img")
    assert error is not None and "no_such_module" in error.message


def test_display_json_shows_sizes_not_bytes(registry, astronaut):
    unit = unit_from_values(_values({"image": astronaut, "mask": None}), preprocessors=registry, tab="txt2img")
    shown = json.loads(display_json(unit))
    assert shown["image"] == "<image 512x512x3, sent as base64 PNG>"
    assert shown["module"] == "canny" and shown["threshold_a"] == 80.0
    assert display_json(None) == "null"
