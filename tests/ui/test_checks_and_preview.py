"""What the unit's status says, the run-preprocessor preview, and the gradio value shapes the panel reads."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from lib_controlnet.preprocessors import Preprocessor, Registry, resolve_params, run_preprocessor
from lib_controlnet.ui import compat
from lib_controlnet.ui.canvas import blank_canvas, image_size
from lib_controlnet.ui.preview import run_preview
from lib_controlnet.ui.unit_checks import status_markdown, unit_problems
from lib_controlnet.units.unit import Unit


def _model(models, stem: str) -> str:
    return next(e.name for e in models.entries() if e.stem == stem)


def _problems(unit, models, registry, tab="txt2img", family=None):
    return unit_problems(unit, tab=tab, models=models, preprocessors=registry, checkpoint_family=lambda: family)


def test_ready_unit_has_no_problems(models, registry, astronaut):
    unit = Unit(enabled=True, module="canny", model=_model(models, "canny_a"), image=astronaut)
    assert _problems(unit, models, registry, family="sd1") == []
    assert status_markdown(unit, []).startswith("**Ready:** canny with `canny_a")
    assert status_markdown(Unit(enabled=False), []) == ""  # a disabled unit is not used: nothing to say


def test_problems_a_user_sees_before_generating(models, registry, astronaut):
    canny_a = _model(models, "canny_a")
    no_image = _problems(Unit(enabled=True, module="canny", model=canny_a), models, registry)
    assert any("no control image" in p for p in no_image)
    assert _problems(Unit(enabled=True, module="canny", model=canny_a), models, registry, tab="img2img") == []
    missing = _problems(Unit(enabled=True, module="canny", model="control_v11p_sd15_depth [abcd1234]",
                             image=astronaut), models, registry)
    assert len(missing) == 1 and "not found" in missing[0] and "Refresh models" in missing[0]
    mismatch = _problems(Unit(enabled=True, module="canny", model=_model(models, "canny_b"), image=astronaut),
                         models, registry, family="sd1")
    assert mismatch == [f"model {_model(models, 'canny_b')} is for SDXL, but the loaded checkpoint is SD1.x"]
    out_of_range = _problems(Unit(enabled=True, module="scribble_xdog", model=canny_a, image=astronaut,
                                  threshold_a=100), models, registry)
    assert len(out_of_range) == 1 and "XDoG Threshold" in out_of_range[0] and "between 1 and 64" in out_of_range[0]
    no_mask = _problems(Unit(enabled=True, module="inpaint_only", model=canny_a, image=astronaut), models, registry)
    assert any("needs a mask" in p for p in no_mask)
    bad_image = _problems(Unit(enabled=True, module="canny", model=canny_a, image="not an image"), models, registry)
    assert any("cannot be used" in p for p in bad_image)
    no_model = _problems(Unit(enabled=True, module="canny", image=astronaut), models, registry)
    assert no_model == ["no ControlNet model selected"]
    assert "**Error:** no ControlNet model selected" in status_markdown(Unit(enabled=True), no_model)


def test_preview_is_the_preprocessor_output(registry, astronaut):
    reports = []
    result = run_preview({"image": astronaut, "mask": None}, "canny", 512, 100, 200, preprocessors=registry,
                         report=lambda fraction, text: reports.append((fraction, text)))
    canny = registry.get("canny")
    expected = run_preprocessor(canny, astronaut, resolve_params(canny, 512, 100, 200)).display
    assert result.ok and np.array_equal(result.display, expected)
    assert "canny" in result.message and "512×512" in result.message
    assert [f for f, _ in reports] == [0.0, 0.2, 1.0]
    looser = run_preview({"image": astronaut, "mask": None}, "canny", 512, 20, 60, preprocessors=registry)
    assert int((looser.display > 0).sum()) > int((result.display > 0).sum())  # the thresholds reach it


def test_preview_pixel_perfect_uses_the_target_size(registry, astronaut):
    result = run_preview(astronaut, "canny", 512, 100, 200, preprocessors=registry, pixel_perfect=True,
                         target_size=(256, 256))
    assert result.display.shape[:2] == (256, 256) and "resolution 256" in result.message


def test_preview_reads_a_scribble_drawn_on_a_blank_canvas(registry):
    canvas = blank_canvas(320, 256)
    assert canvas.shape == (256, 320, 3) and (canvas == 255).all()
    strokes = np.zeros((256, 320, 3), np.uint8)
    strokes[100:110, 40:280] = 255
    result = run_preview({"image": canvas, "mask": strokes}, "scribble_sketch", 256, 64, 0.5, preprocessors=registry)
    assert result.ok and result.display[105, 160].max() == 255 and result.display[20, 20].max() == 0
    assert image_size({"image": canvas, "mask": None}) == (320, 256) and image_size(None) is None


def test_preview_failures_are_messages(registry, astronaut):
    assert "upload a control image" in run_preview(None, "canny", 512, 100, 200, preprocessors=registry).message
    bad = run_preview(astronaut, "canny", 512, 999, 200, preprocessors=registry)
    assert not bad.ok and "Low Threshold" in bad.message

    def explode(image, params):
        raise RuntimeError("weights missing: annotator/downloads/x.pth")

    failing = Registry([registry.get("none"), Preprocessor(name="exploding", run=explode)])
    result = run_preview(astronaut, "exploding", 512, -1, -1, preprocessors=failing)
    assert not result.ok and "exploding failed: RuntimeError: weights missing" in result.message


def test_image_values_of_both_gradio_versions(astronaut):
    assert compat.image_and_mask(None) == (None, None)
    rgb, mask = compat.image_and_mask({"image": astronaut, "mask": np.zeros_like(astronaut)})
    assert np.array_equal(rgb, astronaut) and mask is None
    strokes = np.zeros_like(astronaut)
    strokes[10:20, 10:20] = 255
    _, mask = compat.image_and_mask({"image": astronaut, "mask": strokes})
    assert mask.shape == astronaut.shape[:2] and mask[15, 15] == 255 and mask[50, 50] == 0
    # gradio 4's ImageEditor: RGBA background, drawn layers' alpha is the mask
    background = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    layer = np.zeros((*astronaut.shape[:2], 4), np.uint8)
    layer[30:40, 30:40, 3] = 255
    rgb, mask = compat.image_and_mask({"background": background, "layers": [layer], "composite": background})
    assert np.array_equal(rgb, astronaut) and mask[35, 35] == 255 and mask.sum() == 255 * 100
    with pytest.raises(TypeError):
        compat.image_and_mask("a path")


def _data_url(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_sketch_image_accepts_the_value_sent_right_after_an_upload(astronaut):
    image = compat.mask_image()
    assert image.get_block_name() == "image"  # rendered by gradio's own image component
    value = image.preprocess({"image": _data_url(astronaut), "mask": None})
    assert np.array_equal(value["image"], astronaut) and value["mask"] is None
    strokes = np.zeros((512, 512, 4), np.uint8)
    strokes[:10, :10] = 255
    value = image.preprocess({"image": _data_url(astronaut), "mask": _data_url(strokes)})
    assert value["mask"][5, 5, 0] == 255 and value["mask"][100, 100, 0] == 0
