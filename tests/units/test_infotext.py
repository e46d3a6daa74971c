"""Infotext: the reference's exact text, round-trips through an A1111 parameters line, and the old formats."""

from __future__ import annotations

import json
import re

import pytest

from lib_controlnet.enums import ControlMode, HiResFixOption, PuLIDMode, ResizeMode
from lib_controlnet.errors import InputError
from lib_controlnet.units.infotext import (
    INFOTEXT_FIELDS,
    infotext_params,
    parse_infotext,
    parse_unit,
    quote,
    serialize_unit,
    unquote,
)
from lib_controlnet.units.unit import Unit

# reference doc §8: the text the reference writes for a canny unit
REFERENCE_CANNY = (
    "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 1.0, Resize Mode: Crop and Resize, "
    "Processor Res: 512, Threshold A: 100.0, Threshold B: 200.0, Guidance Start: 0.0, Guidance End: 1.0, "
    "Pixel Perfect: False, Control Mode: Balanced"
)


def canny_unit(**changes) -> Unit:
    values = {"enabled": True, "module": "canny", "model": "control_v11p_sd15_canny [d14c016b]",
              "processor_res": 512, "threshold_a": 100, "threshold_b": 200}
    return Unit.from_dict({**values, **changes})


def a1111_parameters(params: dict[str, str]) -> str:
    """The last line of an A1111 infotext: `Key: value, ...`, values quoted when they need it."""
    return ", ".join(f"{k}: {quote(v)}" for k, v in params.items())


def parse_a1111_parameters(line: str) -> dict[str, str]:
    """Independent reading of that line: keys up to ': ', values either a JSON string or up to the next comma."""
    found = {}
    for key, value in re.findall(r'\s*([\w][\w \-/]*):\s*("(?:[^"\\]|\\.)*"|[^,]*)(?:,|$)', line):
        found[key] = json.loads(value) if value.startswith('"') else value
    return found


def test_serialize_is_the_references_text():
    assert serialize_unit(canny_unit()) == REFERENCE_CANNY


def test_written_line_matches_the_reference_format():
    line = a1111_parameters({"Steps": "20", **infotext_params([canny_unit()])})
    assert line == f'Steps: 20, ControlNet 0: "{REFERENCE_CANNY}"'


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"weight": 0.35, "guidance_start": 0.125, "guidance_end": 0.75, "pixel_perfect": True},
        {"resize_mode": "Resize and Fill", "control_mode": "My prompt is more important"},
        {"resize_mode": 0, "control_mode": 2, "hr_option": "Low res only"},
        {"module": "ip-adapter_clip_sd15", "model": "ip-adapter_sd15_plus [32cd8f7f]", "threshold_a": 0.5},
        {"module": "none", "model": "a, weird: model \"name\" [01234567]"},
        {"model": "1234"},
        {"processor_res": -1, "threshold_a": -1, "threshold_b": -1},
    ],
)
def test_round_trip_through_an_a1111_line(changes):
    units = [canny_unit(**changes), Unit(), canny_unit(module="depth_midas", weight=0.6)]
    line = a1111_parameters({"Steps": "20", "Sampler": "Euler a", **infotext_params(units), "Version": "v1.10.1"})
    parsed = parse_infotext(parse_a1111_parameters(line))
    assert sorted(parsed) == [0, 2]  # disabled units are not written; the others keep their position
    for index in (0, 2):
        for field in (*INFOTEXT_FIELDS, "hr_option"):
            assert getattr(parsed[index], field) == getattr(units[index], field), field
        assert parsed[index].enabled is True


def test_hr_option_is_written_only_when_it_matters():
    assert "Hr Option" not in serialize_unit(canny_unit())
    text = serialize_unit(canny_unit(hr_option="High res only"))
    assert text.endswith(", Hr Option: High res only")
    assert parse_unit(text).hr_option is HiResFixOption.HIGH_RES_ONLY


def test_pulid_mode_is_written_only_when_it_is_not_the_default():
    assert "Pulid Mode" not in serialize_unit(canny_unit())
    text = serialize_unit(canny_unit(pulid_mode="Extremely style"))
    assert text.endswith(", Pulid Mode: Extremely style")
    assert parse_unit(text).pulid_mode is PuLIDMode.STYLE


def test_reference_written_text_parses():
    unit = parse_unit(REFERENCE_CANNY.replace("Control Mode: Balanced", "Control Mode: ControlNet is more important")
                      + ", Low Vram: True", index=0)
    assert (unit.module, unit.model, unit.processor_res, unit.threshold_b) == (
        "canny", "control_v11p_sd15_canny [d14c016b]", 512, 200.0)
    assert unit.control_mode is ControlMode.CONTROL and unit.low_vram is True


# --- older formats --------------------------------------------------------------------------------------
def test_v1_1_2xx_format():
    text = ("preprocessor: depth_midas, model: control_v11f1p_sd15_depth [cfd03158], weight: 0.8, "
            "starting/ending: (0.1, 0.9), resize mode: Just Resize, pixel perfect: True, "
            "control mode: My prompt is more important, preprocessor params: (384, 64, 64)")
    unit = parse_infotext({"ControlNet 1": text})[1]
    assert (unit.module, unit.model, unit.weight) == ("depth_midas", "control_v11f1p_sd15_depth [cfd03158]", 0.8)
    assert (unit.guidance_start, unit.guidance_end) == (0.1, 0.9)
    assert (unit.processor_res, unit.threshold_a, unit.threshold_b) == (384, 64.0, 64.0)
    assert unit.resize_mode is ResizeMode.RESIZE and unit.pixel_perfect is True
    assert unit.control_mode is ControlMode.PROMPT


def test_v1_1_14x_python_reprs_and_single_unit_key():
    text = ("{'preprocessor': 'canny', 'model': 'control_canny-fp16 [e3fe7712]', 'weight': 1, "
            "'starting/ending': '(0, 1)', 'resize mode': 'ResizeMode.INNER_FIT', 'pixel perfect': 'False', "
            "'control mode': 'ControlMode.BALANCED', 'preprocessor params': '(512, 100, 200)'}")
    unit = parse_infotext({"ControlNet": text})[0]
    assert (unit.module, unit.model, unit.resize_mode, unit.control_mode) == (
        "canny", "control_canny-fp16 [e3fe7712]", ResizeMode.INNER_FIT, ControlMode.BALANCED)
    assert (unit.processor_res, unit.threshold_a) == (512, 100.0)


def test_flat_per_field_formats():
    params = {
        "ControlNet-0 Enabled": "True", "ControlNet-0 Module": "openpose",
        "ControlNet-0 Model": "control_sd15_openpose",
        "ControlNet-0 Weight": "0.75", "ControlNet-0 Guidance Start": "0", "ControlNet-0 Guidance End": "0.5",
        "ControlNet 1 Enabled": "True", "ControlNet 1 Preprocessor": "scribble_hed",
        "ControlNet 1 Model": "m [12345678]",
        "ControlNet 1 Weight": "1", "ControlNet 1 Starting Step": "0.2", "ControlNet 1 Ending Step": "1",
        "ControlNet 1 Resize Mode": "Envelope (Outer Fit)", "ControlNet 1 Pixel Perfect": "False",
        "ControlNet 1 Control Mode": "Balanced", "ControlNet 1 Preprocessor Parameters": "(512, 64, 64)",
        "Steps": "20",
    }
    units = parse_infotext(params)
    assert (units[0].module, units[0].weight, units[0].guidance_end) == ("openpose", 0.75, 0.5)
    assert (units[1].module, units[1].guidance_start, units[1].resize_mode) == ("scribble_hed", 0.2,
                                                                                ResizeMode.OUTER_FIT)
    assert units[1].processor_res == 512


def test_own_paste_keys_and_other_parameters_are_not_units():
    assert parse_infotext({"ControlNet 0 module": "canny", "Steps": "20", "ControlNet 0 weight": 1.0}) == {}


# --- errors ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, field",
    [
        ("garbage without a colon", "infotext"),
        ("", "infotext"),
        ("Module: canny, Weight: 5", "weight"),
        ("Module: canny, Control Mode: Sometimes", "control_mode"),
        ("preprocessor: canny, starting/ending: (0.5)", "infotext"),
    ],
)
def test_broken_entries_name_the_unit(text, field):
    with pytest.raises(InputError) as info:
        parse_infotext({"ControlNet 3": text})
    assert (info.value.unit, info.value.field) == (3, field)
    errors = {}
    assert parse_infotext({"ControlNet 3": text, "ControlNet 0": REFERENCE_CANNY}, errors).keys() == {0}
    assert list(errors) == [3] and errors[3].startswith("ControlNet 3:")


def test_quote_and_unquote_follow_a1111():
    assert quote("Balanced") == "Balanced"
    assert quote("a, b") == '"a, b"' and quote("x: y") == '"x: y"'
    assert quote('say "hi", ok') == '"say \\"hi\\", ok"'
    assert unquote(quote('say "hi", ok')) == 'say "hi", ok'
    assert unquote('"broken') == '"broken' and unquote("plain") == "plain"
