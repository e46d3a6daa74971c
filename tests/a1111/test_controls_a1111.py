"""Controls beyond a plain ControlNet in a real A1111 WebUI (issue 13): reference_only and reference_adain+attn
with model "None", tile_colorfix(+sharp) with a tile ControlNet (tools/a1111_rig.sh makes a random-weight
control_v11f1e_sd15_tile), inpaint_only with A1111's img2img mask and with the unit's own mask, and
recolor_luminance. Each generates, changes the image against the same request without the unit, and leaves
the model exactly as it was: the rig's probe (tests/a1111/probe.py) sees no hook, replaced forward, new
attribute or written weight on any module of the UNet (its attention and norm modules included), the VAE or
the text encoder, and the next plain request gives the plain image bit for bit.

Skipped unless `A1111_URL` names a running WebUI (see test_api_a1111.py); under `A1111_REQUIRE=1` (the rig)
a missing model or probe is a failure.
"""

from __future__ import annotations

import os

import pytest

if not os.environ.get("A1111_URL"):
    pytest.skip("A1111_URL is not set (no A1111 WebUI to test against)", allow_module_level=True)

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from tests.a1111.probe import assert_as_before, model_state  # noqa: E402
from tests.a1111.test_api_a1111 import (  # noqa: E402
    IMAGE_B64,
    SIZE,
    generate,
    get,
    img2img_payload,
    model_name,  # noqa: F401  (fixture: the canny ControlNet)
    ok_json,
    same,
    shapes_image,
    square_mask,
    to_b64,
    txt2img_payload,
    unit,
)

STEPS = 2
TILE = "control_v11f1e_sd15_tile"


def txt2img(units=None, **overrides):
    images, info = generate("txt2img", txt2img_payload(units, steps=STEPS, **overrides))
    return images, info.get("infotexts", [""])[0] or str(info)


def ramp_photo(size: int = SIZE) -> np.ndarray:
    """A grey ramp with a bright square: a control whose brightness varies in both directions."""
    ramp = np.linspace(70, 190, size).astype(np.uint8)
    photo = np.dstack([np.tile(ramp, (size, 1))] * 3)
    photo[size // 4: size // 2, size // 4: size // 2] = 230
    return photo


@pytest.fixture(scope="module")
def tile_name() -> str:
    listed = ok_json(get("/controlnet/model_list"))["model_list"]
    match = [n for n in listed if n.split(" [")[0] == TILE]
    if not match:
        pytest.skip(f"{TILE} is not in /controlnet/model_list (made by tools/a1111_rig.sh): {listed}")
    return match[0]


@pytest.fixture(scope="module")
def plain() -> dict:
    """The plain txt2img image and the model's state, after one txt2img and one img2img without units (so that
    whatever A1111 sets up lazily on first use, e.g. the Lora extension's per-module fields, already exists)."""
    generate("img2img", img2img_payload(shapes_image()))
    image = txt2img()[0][0]
    return {"image": image, "state": model_state()}


def assert_left_as_before(plain: dict, what: str) -> None:
    assert_as_before(plain["state"], what)
    assert same(txt2img()[0][0], plain["image"]), f"the plain image changed after {what}"


@pytest.mark.parametrize("module", ["reference_only", "reference_adain+attn"])
def test_reference_with_model_none(plain, module):
    images, infotext = txt2img([unit("None", module=module, threshold_a=0.5)])
    assert len(images) == 2, f"expected the image and the reference map, got {len(images)} images"
    assert not same(images[0], plain["image"]), f"{module} changed nothing"
    assert f"Module: {module}" in infotext and "Model: None" in infotext, infotext
    assert_left_as_before(plain, module)


def test_reference_only_at_weight_zero_is_the_plain_image(plain):
    images, _ = txt2img([unit("None", module="reference_only", threshold_a=0.5, weight=0.0)])
    assert same(images[0], plain["image"]), "reference_only at weight 0 changed the image"


def test_tile_colorfix_with_a_tile_controlnet(plain, tile_name):
    """tile_resample at rate 1 feeds the same hint as tile_colorfix: what differs is colorfix's correction of
    each step's x0 (and +sharp's on the uncond rows)."""
    tile, _ = txt2img([unit(tile_name, module="tile_resample", threshold_a=1.0)])
    fixed, infotext = txt2img([unit(tile_name, module="tile_colorfix", threshold_a=8)])
    sharp, _ = txt2img([unit(tile_name, module="tile_colorfix+sharp", threshold_a=8, threshold_b=1.0)])
    assert f"Model: {tile_name}" in infotext and "Module: tile_colorfix" in infotext, infotext
    assert not same(fixed[0], plain["image"]), "tile_colorfix changed nothing"
    assert not same(fixed[0], tile[0]), "tile_colorfix gave the image of a plain tile unit"
    assert not same(sharp[0], fixed[0]), "tile_colorfix+sharp gave the image of tile_colorfix"
    assert_left_as_before(plain, "tile_colorfix units")


def test_inpaint_only_on_img2img_with_a_mask(plain, model_name):  # noqa: F811
    """With A1111's own mask, inpaint_only runs as inpaint_global_harmonious (the reference's switch); A1111
    keeps what is outside the mask."""
    size, lo, hi = SIZE, 16, 48
    init = shapes_image(size)
    masked = dict(mask=to_b64(square_mask(size, lo, hi)), mask_blur=0, inpainting_fill=1, inpaint_full_res=False,
                  denoising_strength=0.75)
    without, _ = generate("img2img", img2img_payload(init, **masked))
    images, info = generate("img2img", img2img_payload(init, [unit(model_name, module="inpaint_only", image=None)],
                                                       **masked))
    harmonious, _ = generate("img2img", img2img_payload(init, [unit(model_name, module="inpaint", image=None)],
                                                        **masked))
    assert len(images) == 2, f"expected 1 image + 1 detected map, got {len(images)}"
    assert not same(images[0][lo:hi, lo:hi], without[0][lo:hi, lo:hi]), "inpaint_only changed nothing"
    assert same(images[0], harmonious[0]), "inpaint_only with an img2img mask is not inpaint_global_harmonious"
    outside = np.abs(images[0][:lo].astype(int) - init[:lo].astype(int)).max()
    assert outside <= 2, f"pixels outside A1111's mask changed by {outside}"
    assert_left_as_before(plain, "inpaint_only on img2img")


def test_inpaint_only_with_the_units_mask_keeps_what_is_outside(plain, model_name):  # noqa: F811
    """txt2img with the unit's own image and mask: the latent blend keeps the unmasked area and the final pixel
    blend (control_net_inpaint_blur_sigma, 7 by default) pastes the input back outside the blurred mask."""
    image = shapes_image()
    mask = square_mask(SIZE, 20, 44)
    images, _ = txt2img([unit(model_name, module="inpaint_only", image=to_b64(image), mask=to_b64(mask))])
    result = images[0]
    sigma = 7
    blend = cv2.blur(cv2.dilate((mask[:, :, 0] > 0).astype(np.float32), np.ones((sigma, sigma), np.uint8)),
                     (sigma, sigma))
    outside, inside = blend == 0, blend == 1
    assert outside.sum() > 1000 and inside.sum() > 100
    # A1111 turns [0, 1] into bytes by truncation, so a pasted pixel may come back one below
    off = np.abs(result[outside].astype(int) - image[outside].astype(int)).max()
    assert off <= 1, f"pixels outside the blurred mask differ from the input by {off}"
    assert not same(result[inside], image[inside]), "the masked area was not generated"
    assert not same(result, plain["image"])
    assert_left_as_before(plain, "inpaint_only with the unit's mask")


def test_recolor_luminance_gives_the_image_the_controls_lightness(plain, model_name):  # noqa: F811
    images, infotext = txt2img([unit(model_name, module="recolor_luminance", image=to_b64(ramp_photo()),
                                     threshold_a=1.0)])
    assert len(images) == 2 and "Module: recolor_luminance" in infotext, infotext
    result, control = images[0], images[1][:, :, 0].astype(int)  # the detected map is the control
    assert not same(result, plain["image"]), "recolor_luminance changed nothing"
    lightness = cv2.cvtColor(result, cv2.COLOR_RGB2LAB)[:, :, 0].astype(int)
    assert np.median(np.abs(lightness - control)) <= 2, np.abs(lightness - control).max()
    assert np.corrcoef(lightness.ravel(), control.ravel())[0, 1] > 0.9
    plain_lightness = cv2.cvtColor(plain["image"], cv2.COLOR_RGB2LAB)[:, :, 0].astype(int)
    assert np.median(np.abs(plain_lightness - control)) > 5, "the plain image already had the control's lightness"
    assert_left_as_before(plain, "recolor_luminance")


def test_all_four_controls_in_one_request_then_the_model_is_as_it_was(plain, model_name, tile_name):  # noqa: F811
    mask = to_b64(square_mask(SIZE, 20, 44))
    units = [unit("None", module="reference_only", image=IMAGE_B64, threshold_a=0.5),
             unit(tile_name, module="tile_colorfix", threshold_a=8, weight=0.6),
             unit(model_name, module="inpaint_only", image=to_b64(shapes_image()), mask=mask),
             unit(model_name, module="recolor_luminance", image=to_b64(ramp_photo()), threshold_a=1.0, weight=0.5)]
    images, _ = txt2img(units)
    assert len(images) == 5 and not same(images[0], plain["image"])
    assert_left_as_before(plain, "four controls together")
