"""Controls beyond a plain ControlNet through the real socket: reference_only (no model), tile colorfix,
inpaint_only (latent blend + paste-back), recolor; each changes the image and leaves the UNet as it was."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.standalone_server.server_helpers import CONTROLNET, body, gradient, ok, pixels, png_b64, unit
from tests.test_hook_ldm import hook_state


@pytest.fixture(scope="module")
def plain(client):
    return pixels(ok(client.post("/sdapi/v1/txt2img", json=body()))["images"][0])


@pytest.fixture(scope="module")
def unet_state(service):
    unet = service.checkpoint.model.unet
    return lambda: (hook_state(unet), {k: v.clone() for k, v in unet.state_dict().items()})


def same_unet(before, after) -> bool:
    hooks_a, params_a = before
    hooks_b, params_b = after
    return hooks_a == hooks_b and all(np.array_equal(params_a[k].numpy(), params_b[k].numpy()) for k in params_a)


def test_reference_only_needs_no_model_and_leaves_the_unet_as_it_was(client, plain, unet_state):
    before = unet_state()
    data = ok(client.post("/sdapi/v1/txt2img", json=body(
        {"enabled": True, "module": "reference_only", "model": "None", "image": png_b64(gradient())})))
    assert len(data["images"]) == 2  # the image and the reference map
    assert not np.array_equal(pixels(data["images"][0]), plain)
    assert same_unet(before, unet_state())
    assert np.array_equal(pixels(ok(client.post("/sdapi/v1/txt2img", json=body()))["images"][0]), plain)


@pytest.mark.parametrize("module", ["reference_adain", "reference_adain+attn"])
def test_reference_adain_modes_generate(client, plain, module):
    data = ok(client.post("/sdapi/v1/txt2img", json=body(
        {"enabled": True, "module": module, "model": "None", "image": png_b64(gradient()), "threshold_a": 0.8})))
    assert not np.array_equal(pixels(data["images"][0]), plain)


def test_reference_at_weight_zero_is_the_plain_image(client, plain):
    data = ok(client.post("/sdapi/v1/txt2img", json=body(
        {"enabled": True, "module": "reference_only", "model": "None", "image": png_b64(gradient()), "weight": 0})))
    assert np.array_equal(pixels(data["images"][0]), plain)


def test_tile_colorfix_differs_from_the_same_tile_unit_without_it(client, unet_state):
    before = unet_state()
    tile = ok(client.post("/sdapi/v1/txt2img", json=body(unit(module="tile_resample", image=png_b64(gradient())))))
    fixed = ok(client.post("/sdapi/v1/txt2img", json=body(unit(module="tile_colorfix", image=png_b64(gradient()),
                                                                threshold_a=3))))
    assert not np.array_equal(pixels(tile["images"][0]), pixels(fixed["images"][0]))
    assert same_unet(before, unet_state())


def test_inpaint_only_keeps_every_pixel_outside_the_blurred_mask(client, plain):
    image = gradient()
    mask = np.zeros((64, 64, 3), np.uint8)
    mask[16:40, 20:44] = 255
    data = ok(client.post("/sdapi/v1/txt2img", json=body(
        unit(module="inpaint_only", image=png_b64(image), mask=png_b64(mask)))))
    result = pixels(data["images"][0])
    sigma = 7  # control_net_inpaint_blur_sigma's default
    blend = cv2.blur(cv2.dilate((mask[:, :, 0] > 0).astype(np.float32), np.ones((sigma, sigma), np.uint8)),
                     (sigma, sigma))
    outside = blend == 0
    assert outside.sum() > 1000
    assert np.array_equal(result[outside], image[outside])
    assert not np.array_equal(result[blend == 1], image[blend == 1])  # the masked area was generated


def test_inpaint_only_with_an_img2img_mask_runs_as_inpaint_global_harmonious(client):
    mask = np.zeros((64, 64, 3), np.uint8)
    mask[:, 32:] = 255

    def generate(module):
        return pixels(ok(client.post("/sdapi/v1/img2img", json=body(
            {"enabled": True, "module": module, "model": CONTROLNET}, init_images=[png_b64(gradient())],
            mask=png_b64(mask), mask_blur=0, denoising_strength=0.6, inpaint_full_res=False)))["images"][0])

    assert np.array_equal(generate("inpaint_only"), generate("inpaint"))


@pytest.mark.parametrize("module", ["recolor_luminance", "recolor_intensity"])
def test_recolor_gives_the_image_the_controls_brightness(client, module):
    ramp = np.linspace(90, 170, 64).astype(np.uint8)
    photo = np.dstack([np.tile(ramp, (64, 1))] * 3)
    data = ok(client.post("/sdapi/v1/txt2img", json=body(unit(module=module, image=png_b64(photo)))))
    result = pixels(data["images"][0])
    control = pixels(data["images"][1])[:, :, 0].astype(int)  # the detected map the unit used
    if module == "recolor_intensity":  # HSV's V is max(R, G, B): set exactly
        assert np.array_equal(cv2.cvtColor(result, cv2.COLOR_RGB2HSV)[:, :, 2].astype(int), control)
    else:  # LAB's L after an 8-bit round trip (saturated demo colours may leave the gamut)
        lightness = cv2.cvtColor(result, cv2.COLOR_RGB2LAB)[:, :, 0].astype(int)
        assert np.median(np.abs(lightness - control)) <= 2
        assert np.corrcoef(lightness.ravel(), control.ravel())[0, 1] > 0.9


@pytest.fixture(scope="module")
def tiny_lama_file(service):
    """A small LaMa generator (the published layout at width 8, 2 blocks) as ControlNetLama.pth."""
    import torch

    from annotator.neural.lama import LamaGenerator
    from annotator.neural.weights import weights_folder

    torch.manual_seed(0)
    net = LamaGenerator(width=8, blocks=2)
    path = weights_folder() / "ControlNetLama.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    yield path
    path.unlink()


def test_inpaint_only_lama_outpaints_with_resize_and_fill(client, tiny_lama_file):
    wide = gradient()[16:48]  # 32 x 64: "Resize and Fill" into 64 x 64 pads 16 rows above and below
    mask = np.zeros_like(wide)
    lama = ok(client.post("/sdapi/v1/txt2img", json=body(unit(
        module="inpaint_only+lama", image=png_b64(wide), mask=png_b64(mask), resize_mode="Resize and Fill"))))
    result = pixels(lama["images"][0])
    # the middle rows, far from the padded (to be painted) border, are the input's own pixels, pasted back
    assert np.array_equal(result[28:36], wide[12:20])
    assert not np.array_equal(result[:8], np.repeat(wide[:1], 8, axis=0))  # the padding was painted
    plain = ok(client.post("/sdapi/v1/txt2img", json=body(unit(
        module="inpaint_only", image=png_b64(wide), mask=png_b64(mask), resize_mode="Resize and Fill"))))
    assert not np.array_equal(result, pixels(plain["images"][0]))  # LaMa's fill seeded the noise
