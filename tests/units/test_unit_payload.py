"""Unit.from_dict: the reference's fields, aliases, enums, validation errors (unit index + field), round-trips."""

from __future__ import annotations

import enum
from dataclasses import fields
from types import SimpleNamespace

import numpy as np
import pytest
from unit_test_helpers import astronaut, encode

from lib_controlnet.enums import ControlMode, HiResFixOption, InputMode, PuLIDMode, ResizeMode, UnionControlType
from lib_controlnet.errors import InputError
from lib_controlnet.units.unit import FIELD_NAMES, Unit

# The reference's ControlNetUnit fields in declaration order with their defaults (reference doc §1.1).
REFERENCE_FIELDS = [
    ("is_ui", False), ("input_mode", "simple"), ("batch_images", None), ("output_dir", ""), ("loopback", False),
    ("enabled", False), ("module", "none"), ("model", "None"), ("weight", 1.0), ("image", None),
    ("resize_mode", "Crop and Resize"), ("low_vram", False), ("processor_res", -1), ("threshold_a", -1),
    ("threshold_b", -1), ("guidance_start", 0.0), ("guidance_end", 1.0), ("pixel_perfect", False),
    ("control_mode", "Balanced"), ("inpaint_crop_input_image", True), ("hr_option", "Both"),
    ("save_detected_map", True), ("advanced_weighting", None), ("effective_region_mask", None),
    ("pulid_mode", "Fidelity"), ("union_control_type", "Unknown"), ("ipadapter_input", None), ("mask", None),
    ("batch_mask_dir", None), ("animatediff_batch", False), ("batch_modifiers", []), ("batch_image_files", []),
    ("batch_keyframe_idx", None),
]


def test_fields_order_and_defaults_are_the_references():
    assert list(FIELD_NAMES) == [name for name, _ in REFERENCE_FIELDS]
    assert Unit().to_dict() == dict(REFERENCE_FIELDS)
    # vars() order is what UI code written for the reference relies on
    assert list(vars(Unit()))[: len(REFERENCE_FIELDS)] == list(FIELD_NAMES)
    assert [f.name for f in fields(Unit)][-2:] == ["ignored_keys", "aliases_used"]


def test_defaults_for_empty_dict_are_a_disabled_unit():
    unit = Unit.from_dict({})
    assert unit.enabled is False and unit.module == "none" and unit.model == "None"
    assert unit.resize_mode is ResizeMode.INNER_FIT and unit.control_mode is ControlMode.BALANCED


# --- enabled ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "payload, enabled",
    [
        ({"module": "canny"}, True),
        ({"model": "control_v11p_sd15_canny [d14c016b]"}, True),
        ({"module": "none", "model": "None"}, False),
        ({"module": "None", "model": "none"}, False),
        ({"weight": 0.5}, False),
        ({"module": "canny", "enabled": False}, False),
        ({"module": "none", "enabled": True}, True),
        ({"module": "canny", "enabled": "false"}, False),
        ({"module": "canny", "enabled": 1}, True),
    ],
)
def test_enabled_inferred_only_when_absent(payload, enabled):
    assert Unit.from_dict(payload).enabled is enabled


# --- aliases -------------------------------------------------------------------------------------------
def test_legacy_aliases_map_to_fields_and_are_recorded():
    image = encode(astronaut()[:32, :32])
    unit = Unit.from_dict({"module": "canny", "guidance": 0.4, "lowvram": True, "input_image": image,
                           "mask_image": image, "guessmode": True, "guess_mode": False})
    assert unit.guidance_end == 0.4
    assert unit.low_vram is True
    assert unit.image is image and unit.mask is image
    assert set(unit.aliases_used) == {"guidance", "lowvram", "input_image", "mask_image", "guessmode", "guess_mode"}
    text = " ".join(unit.warnings())
    assert "'guidance' is a deprecated alias of 'guidance_end'" in text
    assert "'mask_image' is a deprecated alias of 'mask'" in text
    assert "Guess Mode" in text


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"guidance": 0.5, "guidance_end": 0.6}, "guidance_end"),
        ({"lowvram": True, "low_vram": False}, "low_vram"),
        ({"input_image": "a", "image": "b"}, "image"),
        ({"mask_image": "a", "mask": "b"}, "mask"),
    ],
)
def test_alias_and_field_both_given_is_an_error(payload, field):
    with pytest.raises(InputError) as info:
        Unit.from_dict(payload, index=3)
    assert (info.value.unit, info.value.field) == (3, field)
    assert info.value.status_code == 422


def test_mask_image_none_is_absent():
    assert Unit.from_dict({"mask_image": None, "mask": "abc"}).mask == "abc"
    assert Unit.from_dict({"mask_image": "abc", "mask": None}).mask == "abc"


def test_unknown_keys_are_ignored_but_recorded():
    unit = Unit.from_dict({"module": "canny", "preset": "x", "zz": 1})
    assert unit.ignored_keys == ("preset", "zz")
    assert "unknown field 'preset' ignored" in unit.warnings()
    assert "preset" not in unit.to_dict()


# --- enums ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, expected",
    [
        ("Just Resize", ResizeMode.RESIZE),
        ("Crop and Resize", ResizeMode.INNER_FIT),
        ("Resize and Fill", ResizeMode.OUTER_FIT),
        ("Inner Fit (Scale to Fit)", ResizeMode.INNER_FIT),
        ("Scale to Fit (Inner Fit)", ResizeMode.INNER_FIT),
        ("Outer Fit (Shrink to Fit)", ResizeMode.OUTER_FIT),
        ("Envelope (Outer Fit)", ResizeMode.OUTER_FIT),
        (0, ResizeMode.RESIZE),
        (1, ResizeMode.INNER_FIT),
        (2, ResizeMode.OUTER_FIT),
        (3, ResizeMode.RESIZE),  # A1111's "Just resize (latent upscale)"
        (np.int64(2), ResizeMode.OUTER_FIT),
    ],
)
def test_resize_mode_strings_aliases_and_ints(value, expected):
    assert Unit.from_dict({"resize_mode": value}).resize_mode is expected


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("control_mode", 0, ControlMode.BALANCED),
        ("control_mode", 1, ControlMode.PROMPT),
        ("control_mode", 2, ControlMode.CONTROL),
        ("control_mode", "My prompt is more important", ControlMode.PROMPT),
        ("control_mode", "ControlNet is more important", ControlMode.CONTROL),
        ("hr_option", 0, HiResFixOption.BOTH),
        ("hr_option", 1, HiResFixOption.LOW_RES_ONLY),
        ("hr_option", 2, HiResFixOption.HIGH_RES_ONLY),
        ("hr_option", "High res only", HiResFixOption.HIGH_RES_ONLY),
        ("input_mode", "merge", InputMode.MERGE),
        ("pulid_mode", "Extremely style", PuLIDMode.STYLE),
        ("union_control_type", 7, UnionControlType.INPAINT),
        ("union_control_type", "Normal Map", UnionControlType.NORMAL_MAP),
    ],
)
def test_enum_fields_accept_index_and_string(field, value, expected):
    assert getattr(Unit.from_dict({field: value}), field) is expected


def test_foreign_enum_objects_are_read_by_value():
    class ReferenceControlMode(enum.Enum):  # the reference's enums are plain Enums with the same strings
        CONTROL = "ControlNet is more important"

    unit = Unit.from_dict({"control_mode": ReferenceControlMode.CONTROL})
    assert unit.control_mode is ControlMode.CONTROL


# --- validation errors: every one names the unit and the field -----------------------------------------
@pytest.mark.parametrize(
    "payload, field",
    [
        ({"weight": 2.5}, "weight"),
        ({"weight": -0.1}, "weight"),
        ({"weight": "heavy"}, "weight"),
        ({"weight": None}, "weight"),
        ({"weight": True}, "weight"),
        ({"weight": float("nan")}, "weight"),
        ({"guidance_start": -0.01}, "guidance_start"),
        ({"guidance_end": 1.5}, "guidance_end"),
        ({"guidance_start": 0.8, "guidance_end": 0.2}, "guidance_start"),
        ({"guidance": 1.2}, "guidance_end"),
        ({"resize_mode": 4}, "resize_mode"),
        ({"resize_mode": -1}, "resize_mode"),
        ({"resize_mode": "Stretch"}, "resize_mode"),
        ({"resize_mode": True}, "resize_mode"),
        ({"control_mode": 3}, "control_mode"),
        ({"control_mode": "Guess"}, "control_mode"),
        ({"hr_option": "Sometimes"}, "hr_option"),
        ({"input_mode": "folder"}, "input_mode"),
        ({"pulid_mode": 5}, "pulid_mode"),
        ({"union_control_type": "Color"}, "union_control_type"),
        ({"enabled": "maybe"}, "enabled"),
        ({"pixel_perfect": 2}, "pixel_perfect"),
        ({"low_vram": None}, "low_vram"),
        ({"module": 5}, "module"),
        ({"model": ["a"]}, "model"),
        ({"processor_res": 512.5}, "processor_res"),
        ({"processor_res": "high"}, "processor_res"),
        ({"threshold_a": "x"}, "threshold_a"),
        ({"threshold_b": float("inf")}, "threshold_b"),
        ({"advanced_weighting": []}, "advanced_weighting"),
        ({"advanced_weighting": [1.0, "x"]}, "advanced_weighting"),
        ({"advanced_weighting": [1.0, None]}, "advanced_weighting"),
        ({"advanced_weighting": 0.5}, "advanced_weighting"),
        ({"image": 5}, "image"),
        ({"mask": 1.5}, "mask"),
        ({"effective_region_mask": [1, 2]}, "effective_region_mask"),
        ({"ipadapter_input": []}, "ipadapter_input"),
        ({"ipadapter_input": [1]}, "ipadapter_input"),
        ({"batch_modifiers": "x"}, "batch_modifiers"),
        ({"batch_keyframe_idx": 3}, "batch_keyframe_idx"),
        ({"batch_mask_dir": 3}, "batch_mask_dir"),
        ({"output_dir": 3}, "output_dir"),
    ],
)
def test_invalid_fields_raise_input_error_naming_unit_and_field(payload, field):
    with pytest.raises(InputError) as info:
        Unit.from_dict(payload, index=2)
    error = info.value
    assert (error.unit, error.field) == (2, field)
    assert f"unit 2, field '{field}'" in str(error)


def test_invalid_field_in_a_disabled_unit_is_still_an_error():
    with pytest.raises(InputError):
        Unit.from_dict({"enabled": False, "weight": 9}, index=0)


def test_nothing_is_clamped_or_dropped():
    unit = Unit.from_dict({"weight": 2, "guidance_start": 0, "guidance_end": 0, "threshold_a": 1000,
                           "processor_res": 4096.0, "advanced_weighting": [0, 1, 2.5]})
    assert unit.weight == 2.0 and isinstance(unit.weight, float)
    assert unit.guidance_start == unit.guidance_end == 0.0
    assert unit.threshold_a == 1000.0  # the preprocessor's slider range is checked when it runs
    assert unit.processor_res == 4096 and isinstance(unit.processor_res, int)
    assert unit.advanced_weighting == [0.0, 1.0, 2.5]


def test_slider_defaults_and_coercions():
    unit = Unit.from_dict({"processor_res": None, "threshold_a": None, "threshold_b": "64"})
    assert (unit.processor_res, unit.threshold_a, unit.threshold_b) == (-1, -1.0, 64.0)
    unit = Unit.from_dict({"weight": "0.75", "pixel_perfect": "true", "low_vram": "off", "model": None})
    assert (unit.weight, unit.pixel_perfect, unit.low_vram, unit.model) == (0.75, True, False, "None")


def test_module_check_when_the_caller_gives_one():
    known = {"none", "canny"}.__contains__
    assert Unit.from_dict({"module": "canny"}, is_known_module=known).module == "canny"
    with pytest.raises(InputError) as info:
        Unit.from_dict({"module": "cany", "enabled": False}, index=1, is_known_module=known)
    assert (info.value.unit, info.value.field) == (1, "module")
    assert "'cany'" in info.value.message


def test_direct_construction_validates_too():
    with pytest.raises(InputError) as info:
        Unit(weight=3)
    assert info.value.field == "weight" and info.value.unit is None


# --- round trips ---------------------------------------------------------------------------------------
def test_round_trip_through_to_dict_keeps_every_field():
    image = astronaut()[:64, :48]
    mask = np.zeros((64, 48), np.uint8)
    original = Unit.from_dict({
        "enabled": True, "module": "inpaint_only", "model": "control_v11p_sd15_inpaint [ebff9138]",
        "weight": 1.25, "image": {"image": image, "mask": mask}, "resize_mode": 2, "low_vram": True,
        "processor_res": 768, "threshold_a": 0.3, "threshold_b": 64, "guidance_start": 0.1, "guidance_end": 0.9,
        "pixel_perfect": True, "control_mode": 1, "inpaint_crop_input_image": False, "hr_option": "Low res only",
        "save_detected_map": False, "advanced_weighting": [0.5] * 13, "effective_region_mask": encode(mask),
        "pulid_mode": "Extremely style", "union_control_type": "Tile", "ipadapter_input": ["AAAA"],
        "batch_keyframe_idx": [0, 3], "batch_modifiers": ["x"], "input_mode": "batch", "output_dir": "out",
    }, index=0)
    as_dict = original.to_dict()
    assert as_dict["resize_mode"] == "Resize and Fill" and as_dict["control_mode"] == "My prompt is more important"
    assert as_dict["image"]["image"] is image  # images as given
    again = Unit.from_dict(as_dict)
    assert again == original
    assert again.to_dict().keys() == as_dict.keys()
    changed = Unit.from_dict({**as_dict, "image": {"image": image.copy(), "mask": mask + 1}})
    assert changed != original


def test_objects_with_the_same_attributes_are_accepted():
    reference_like = SimpleNamespace(enabled=True, module="canny", model="m [01234567]", weight=0.5,
                                     image=None, resize_mode="Just Resize", guidance_start=0.2, guidance_end=0.7,
                                     control_mode="ControlNet is more important", low_vram=False,
                                     processor_res=512, threshold_a=100, threshold_b=200, _private=1)
    unit = Unit.from_dict(reference_like, index=4)
    assert (unit.module, unit.weight, unit.resize_mode, unit.control_mode) == (
        "canny", 0.5, ResizeMode.RESIZE, ControlMode.CONTROL)
    with pytest.raises(InputError) as info:
        Unit.from_dict(SimpleNamespace(weight=7), index=4)
    assert (info.value.unit, info.value.field) == (4, "weight")
    copy = Unit.from_dict(unit)
    assert copy == unit and copy is not unit


def test_non_dict_non_object_is_an_error():
    with pytest.raises(InputError) as info:
        Unit.from_dict(["canny", "model"], index=1)
    assert info.value.unit == 1


def test_repr_does_not_dump_image_bytes():
    text = repr(Unit(image=encode(astronaut()), mask=np.zeros((8, 8), np.uint8)))
    assert len(text) < 2000 and "<text of" in text and "<array 8x8 uint8>" in text


def test_properties_used_by_the_runner():
    assert Unit(module="inpaint_only+lama").is_inpaint
    assert Unit(module="ip-adapter_clip_sd15").uses_clip and not Unit(module="ip-adapter_face_id").uses_clip
    assert not Unit().has_model and Unit(model="x [00000000]").has_model
