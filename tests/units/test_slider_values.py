"""Slider values as a new user sends them: any negative number is "the default" (the reference's rule; its docs
say -1, its tests send -100), said in the unit's warnings; positive out-of-range values are still refused; a
pixel-perfect unit's processor_res is unused, so a bad one is a warning; and the infotext's Processor Res is
what the reference writes where pasting depends on it."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from skimage import data

from lib_controlnet import InputError, ModelCache
from lib_controlnet.generation import GenerationInputs, prepare_units
from lib_controlnet.models.registry import ModelRegistry
from lib_controlnet.preprocessors import ResultCache, default_registry, resolve_params
from lib_controlnet.preprocessors.declaration import Params
from lib_controlnet.units.infotext import parse_unit, serialize_unit
from lib_controlnet.units.unit import Unit
from tests.tiny_models import SD_LIKE_UNET, controlnet_state_dict_from_unet, ldm_unet, save_state_dict
from tests.units.unit_test_helpers import encode


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ControlNet")
    save_state_dict(controlnet_state_dict_from_unet(ldm_unet(SD_LIKE_UNET, seed=41), seed=42),
                    folder / "control_tiny_canny.safetensors")
    return ModelRegistry([folder])


@pytest.fixture(scope="module")
def photo_b64():
    return encode(np.ascontiguousarray(data.astronaut()[::4, ::4]))  # 128x128


def prepare(models, **fields):
    unit = Unit.from_dict({"module": "canny", "model": "control_tiny_canny", **fields}, index=0)
    (prepared,) = prepare_units([unit], GenerationInputs(width=64, height=64), models=models,
                                model_cache=ModelCache(), preprocessors=default_registry(), result_cache=ResultCache())
    return prepared


@pytest.mark.parametrize("value", [-2, -100, -1e9, -0.5])
def test_any_negative_value_is_the_default_with_a_note(value):
    canny = default_registry().get("canny")
    notes = []
    assert resolve_params(canny, value, value, value, notes=notes) == Params(512, 100, 200)
    assert len(notes) == 3
    assert notes[0] == f"processor_res {value:g} is negative, so canny used the default Resolution 512"
    assert "threshold_a" in notes[1] and "Low Threshold 100" in notes[1] and "High Threshold 200" in notes[2]


def test_minus_one_is_the_default_without_a_note_and_positive_out_of_range_is_refused():
    canny = default_registry().get("canny")
    notes = []
    assert resolve_params(canny, -1, -1, -1, notes=notes) == Params(512, 100, 200) and notes == []
    for args, field in (((4096,), "processor_res"), ((512, 256), "threshold_a"), ((512, 100, 0.5), "threshold_b")):
        with pytest.raises(InputError) as info:
            resolve_params(canny, *args)
        assert info.value.field == field and "or negative for the default" in info.value.message
    with pytest.raises(InputError):
        resolve_params(canny, 512, float("-inf"))  # not a number a slider can mean


def test_a_generation_unit_with_negative_values_runs_at_the_defaults_and_says_so(models, photo_b64, caplog):
    with caplog.at_level(logging.WARNING, logger="lib_controlnet.generation"):
        prepared = prepare(models, image=photo_b64, processor_res=-100, threshold_a=-100, threshold_b=-5)
    assert (prepared.unit.processor_res, prepared.unit.threshold_a, prepared.unit.threshold_b) == (512, 100, 200)
    assert len(prepared.warnings) == 3
    assert all(w.startswith("ControlNet unit 0: ") for w in prepared.warnings)
    assert "processor_res -100 is negative" in prepared.warnings[0]
    assert [r.getMessage() for r in caplog.records] == prepared.warnings


def test_a_bad_processor_res_on_a_pixel_perfect_unit_is_unused_and_said(models, photo_b64):
    prepared = prepare(models, image=photo_b64, pixel_perfect=True, processor_res=5)
    # pixel perfect: 128x128 image onto 64x64 -> resolution 64, whatever processor_res said
    assert prepared.unit.processor_res == 64
    assert prepared.warnings == ["ControlNet unit 0: processor_res 5 is not used: pixel perfect computed the "
                                 "Resolution (64) from the image and the generation size"]
    assert prepare(models, image=photo_b64, pixel_perfect=True, processor_res=512).warnings == []
    assert prepare(models, image=photo_b64, pixel_perfect=True).warnings == []


def test_pixel_perfect_never_refuses_its_own_resolution(models):
    # a 300x4 strip onto 64x64 with Resize and Fill: k = min(64/4, 64/300) -> 0.85 px; the reference would
    # preprocess at 1 px, we at the slider's minimum, and neither blames processor_res
    strip = np.zeros((4, 300, 3), np.uint8)
    prepared = prepare(models, image=encode(strip), pixel_perfect=True, resize_mode="Resize and Fill")
    assert prepared.unit.processor_res == 64 and prepared.warnings == []


# --- Processor Res in the infotext -------------------------------------------------------------------------
def test_infotext_of_a_none_unit_keeps_the_resolution_the_request_had(models, photo_b64):
    # `none` shows a Resolution slider it does not use: the reference writes the value sent (kept when in
    # range), so pasting restores the slider; we used to write the default 512
    assert prepare(models, module="none", image=photo_b64, processor_res=256).unit.processor_res == 256
    assert prepare(models, module="none", image=photo_b64, processor_res=-1).unit.processor_res == 512
    assert prepare(models, module="none", image=photo_b64, processor_res=99999).unit.processor_res == 512


def test_infotext_of_an_invert_unit_and_the_references_placeholder_paste_back(models, photo_b64):
    used = prepare(models, module="invert", image=photo_b64, processor_res=256).unit
    assert "Processor Res: 256," in serialize_unit(used)  # as sent (deliberate: the reference writes 0.5)
    assert parse_unit(serialize_unit(used)).processor_res == 256
    # what the reference writes for a module without a resolution: its placeholder, which must paste here
    reference = ("Module: invert (from white bg & black line), Model: control_tiny_canny [12345678], Weight: 1.0, "
                 "Resize Mode: Crop and Resize, Processor Res: 0.5, Threshold A: 0.5, Threshold B: 0.5, "
                 "Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: False, Control Mode: Balanced")
    pasted = parse_unit(reference)
    assert pasted.processor_res == -1 and pasted.threshold_a == 0.5 and pasted.module.startswith("invert")
