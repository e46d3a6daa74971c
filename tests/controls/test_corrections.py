"""Post-UNet corrections (tile colorfix, inpaint_only) and pixel post-processes (inpaint_only, recolor) on sdkit's
ldm UNet, each against its formula written out here in plain torch/OpenCV."""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lib_controlnet import CallInfo, ControlHook
from lib_controlnet.controls import ControlRequest, build
from lib_controlnet.controls.inpaint_only import PasteBack
from lib_controlnet.enums import HiResFixOption
from lib_controlnet.preprocessors.declaration import Params
from tests.controls.conftest import fake_encode, host
from tests.test_hook_ldm import hook_state


def to_map(image: torch.Tensor) -> np.ndarray:
    return (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def request(module, maps, **kw):
    params = kw.pop("params", Params(slider_1=8.0, slider_2=1.0))
    return ControlRequest(index=kw.pop("index", 0), module=module, params=params, maps=maps, **kw)


def run(unet, effects, x, t, ctx, info=None, prediction="eps"):
    with torch.no_grad(), ControlHook(unet, effects, lambda *a: info or CallInfo(), host=host(prediction)).applied():
        return unet(x, t, ctx)


def blur(x, k):
    return F.avg_pool2d(F.pad(x, (k, k, k, k), mode="replicate"), 2 * k + 1, stride=1)


def ab(t):
    a_bar = host().alphas_cumprod.double()[int(round(float(t[0])))]
    return a_bar.sqrt().float(), (1 - a_bar).sqrt().float()


def close(a, b, tol=1e-5):
    return torch.allclose(a, b, rtol=tol, atol=tol * b.abs().max().item())


# --- tile colorfix -------------------------------------------------------------------------------------
@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("weight", [1.0, 0.4])
def test_colorfix_replaces_the_low_frequencies_of_x0(unet, inputs, prediction, weight):
    x, t, ctx, image = inputs
    controls = build("colorfix", request("tile_colorfix", [to_map(image)], weight=weight,
                                         params=Params(slider_1=3.0)))
    out = run(unet, controls.effects, x, t, ctx, prediction=prediction)
    with torch.no_grad():
        plain = unet(x, t, ctx)
    a, s = ab(t)
    x0 = (x - s * plain) / a if prediction == "eps" else a * x - s * plain
    hint = fake_encode(torch.from_numpy(to_map(image)).permute(2, 0, 1)[None].float() / 255).repeat(2, 1, 1, 1)
    fixed = x0 - blur(x0, 3) + blur(hint, 3)
    new = (x - a * fixed) / s if prediction == "eps" else (a * x - fixed) / s
    expected = weight * new + (1 - weight) * plain
    assert close(out, expected, 1e-4)
    assert (out - plain).abs().max() > 1e-3


def test_colorfix_sharp_blurs_the_uncond_rows_and_doubles_k_in_hires(unet, inputs):
    x, t, ctx, image = inputs
    controls = build("colorfix", request("tile_colorfix+sharp", [to_map(image)], params=Params(slider_1=3.0,
                                                                                                slider_2=1.5)))
    out = run(unet, controls.effects, x, t, ctx, CallInfo(cond_rows=(0,), hires=True))
    with torch.no_grad():
        plain = unet(x, t, ctx)
    a, s = ab(t)
    x0 = (x - s * plain) / a
    hint = fake_encode(torch.from_numpy(to_map(image)).permute(2, 0, 1)[None].float() / 255).repeat(2, 1, 1, 1)
    k = 6  # 3, doubled in the hires pass
    fixed = x0 - blur(x0, k) + blur(hint, k)
    d = 1.5 * 0.01
    fixed[1] = d * blur(fixed, k)[1] + (1 - d) * fixed[1]  # row 1 is uncond
    assert close(out, (x - a * fixed) / s, 1e-4)


@pytest.mark.parametrize("kwargs, info", [
    ({"weight": 0.0}, CallInfo(fraction=0.5)),
    ({"guidance_end": 0.4}, CallInfo(fraction=0.5)),
    ({"guidance_start": 0.6}, CallInfo(fraction=0.5)),
    ({"hr_option": HiResFixOption.LOW_RES_ONLY}, CallInfo(hires=True)),
])
def test_an_inactive_correction_is_bit_identical(unet, inputs, kwargs, info):
    x, t, ctx, image = inputs
    controls = build("colorfix", request("tile_colorfix", [to_map(image)], **kwargs))
    with torch.no_grad():
        plain = unet(x, t, ctx)
    assert torch.equal(run(unet, controls.effects, x, t, ctx, info), plain)


def test_corrections_leave_the_unet_as_it_was(unet, inputs):
    x, t, ctx, image = inputs
    before = hook_state(unet)
    controls = build("colorfix", request("tile_colorfix", [to_map(image)]))
    run(unet, controls.effects, x, t, ctx)
    assert hook_state(unet) == before


# --- inpaint_only --------------------------------------------------------------------------------------
def rgba_map(image, box):
    rgba = np.dstack([to_map(image), np.zeros(image.shape[-2:], np.uint8)])
    y0, y1, x0, x1 = box
    rgba[y0:y1, x0:x1, 3] = 255
    return rgba


def test_inpaint_only_keeps_x0_outside_the_mask(unet, inputs):
    x, t, ctx, image = inputs
    rgba = rgba_map(image, (40, 90, 30, 100))
    controls = build("inpaint_only", request("inpaint_only", [rgba]))
    out = run(unet, controls.effects, x, t, ctx)
    with torch.no_grad():
        plain = unet(x, t, ctx)
    a, s = ab(t)
    x0_pred, x0_out = (x - s * plain) / a, (x - s * out) / a
    hint = fake_encode(torch.from_numpy(rgba[:, :, :3]).permute(2, 0, 1)[None].float() / 255)
    alpha = torch.from_numpy(rgba[:, :, 3]).float()[None, None] / 255
    m = F.max_pool2d(alpha, 10, stride=8, padding=1)
    assert close(x0_out, x0_pred * m + hint * (1 - m), 1e-4)
    keep = m[0, 0] == 0
    assert keep.any() and (~keep).any()
    assert torch.allclose(x0_out[:, :, keep], hint.expand(2, -1, -1, -1)[:, :, keep], atol=1e-4)
    assert torch.allclose(x0_out[:, :, ~keep & (m[0, 0] == 1)], x0_pred[:, :, ~keep & (m[0, 0] == 1)], atol=1e-4)


def test_inpaint_only_paste_back_gives_the_input_outside_the_blurred_mask():
    g = np.random.default_rng(1)
    image = g.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    rgba = np.dstack([image, np.zeros((64, 64), np.uint8)])
    rgba[20:40, 24:44, 3] = 255
    post = PasteBack([rgba], sigma=7)
    generated = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(2))
    result = post(generated, 0)
    m = cv2.blur(cv2.dilate(rgba[:, :, 3].astype(np.float32) / 255, np.ones((7, 7), np.uint8)), (7, 7))
    expected = torch.from_numpy(m)[None] * generated + (1 - torch.from_numpy(m)[None]) * torch.from_numpy(
        image.transpose(2, 0, 1).astype(np.float32) / 255)
    assert torch.allclose(result, expected, atol=1e-6)
    far = torch.from_numpy(m == 0)
    assert far.sum() > 1000
    assert torch.equal((result[:, far] * 255).round().byte(), torch.from_numpy(image.transpose(2, 0, 1))[:, far])
    inside = torch.from_numpy(m == 1)
    assert torch.allclose(result[:, inside], generated[:, inside])


# --- recolor -------------------------------------------------------------------------------------------
def test_recolor_intensity_sets_hsv_value_exactly_and_luminance_nearly():
    g = np.random.default_rng(3)
    grey = g.integers(30, 220, (48, 64), dtype=np.uint8)
    control = np.dstack([grey] * 3)
    # a generated picture of moderate saturation: a changed lightness stays inside the RGB gamut
    generated = 0.5 + 0.15 * (torch.rand(3, 48, 64, generator=torch.Generator().manual_seed(4)) - 0.5)
    intensity = build("recolor", request("recolor_intensity", [control])).post[0](generated, 0)
    rgb = (intensity.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[:, :, 2], grey)
    luminance = build("recolor", request("recolor_luminance", [control])).post[0](generated, 0)
    rgb = (luminance.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    lab_l = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)[:, :, 0].astype(int)
    assert np.percentile(np.abs(lab_l - grey), 99) <= 3  # LAB's 8-bit round trip
    hue_before = cv2.cvtColor((generated.permute(1, 2, 0).numpy() * 255).astype(np.uint8), cv2.COLOR_RGB2LAB)
    assert np.abs(cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)[:, :, 1:].astype(int) - hue_before[:, :, 1:]).mean() < 8
