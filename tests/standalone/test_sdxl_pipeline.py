"""SDXL generation on the random-weight SDXL demo: conditioning rows, units, odd sizes, img2img, hires fix, and
one whole sampling loop against a hand-written k-diffusion Euler loop over diffusers' UNet."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lib_controlnet import BoundUnit, ControlMode, IncompatibleModelError
from standalone import DEMO_NOTICE
from standalone.hires import HiresFix
from standalone.images import to_tensor
from standalone.sdxl_conditioning import sdxl_vector
from tests.standalone.helpers import hook_count, pixels, small
from tests.standalone.test_standalone_sampling import uniform_sigmas


class UNetCalls:
    """Records x, context and y of every call of the host UNet."""

    def __init__(self, unet):
        self.calls: list[dict] = []
        self.handle = unet.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        self.calls.append({"x": args[0].clone(), "context": kwargs["context"].clone(), "y": kwargs["y"].clone()})

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_sdxl_txt2img_is_deterministic_and_says_demo(sdxl_pipeline):
    first, again = sdxl_pipeline.generate(small()), sdxl_pipeline.generate(small())
    other = sdxl_pipeline.generate(small(seed=4321))
    assert first.images[0].size == (64, 64) and torch.isfinite(first.latents).all()
    assert torch.equal(pixels(first)[0], pixels(again)[0]) and not torch.equal(pixels(first)[0], pixels(other)[0])
    assert pixels(first)[0].std() > 1
    assert first.is_demo and first.warnings == [DEMO_NOTICE]
    assert sdxl_pipeline.model.default_size == 1024 and sdxl_pipeline.model.vae.scale_factor == 0.13025


def test_each_row_gets_its_prompt_and_size_conditioning(sdxl_pipeline):
    model = sdxl_pipeline.model
    with UNetCalls(model.unet) as seen:
        sdxl_pipeline.generate(small(width=72, height=80, batch_size=2, steps=1))
    call = seen.calls[0]
    cond = model.prompts.encode_with_pooled(["a photo of a cat"])
    uncond = model.prompts.encode_with_pooled(["blurry"])
    assert call["x"].shape == (4, 4, 10, 9)
    for row, enc in ((0, cond), (1, cond), (2, uncond), (3, uncond)):
        assert torch.equal(call["context"][row], enc.context[0])
        expected_y = sdxl_vector(enc.pooled, model.adm_in_channels, original=(80, 72), target=(80, 72))
        assert torch.equal(call["y"][row], expected_y[0])


def test_an_empty_negative_prompt_is_all_zeros_as_in_a1111(sdxl_pipeline):
    with UNetCalls(sdxl_pipeline.model.unet) as seen:
        sdxl_pipeline.generate(small(negative_prompt="", steps=1))
    call = seen.calls[0]
    pooled_dim = sdxl_pipeline.model.prompts.towers[1].model.config.projection_dim
    assert not call["context"][1].any() and not call["y"][1, :pooled_dim].any()
    assert call["y"][1, pooled_dim:].equal(call["y"][0, pooled_dim:])  # the sizes stay
    assert call["context"][0].any()


def test_weight_zero_is_identical_to_no_unit_and_a_unit_changes_the_image(sdxl_pipeline, sdxl_controlnet, hint):
    plain = sdxl_pipeline.generate(small())
    zero = sdxl_pipeline.generate(small(units=[BoundUnit(sdxl_controlnet, hint, weight=0.0)]))
    controlled = sdxl_pipeline.generate(small(units=[BoundUnit(sdxl_controlnet, hint)]))
    other = sdxl_pipeline.generate(small(units=[BoundUnit(sdxl_controlnet, 1 - hint)]))
    assert torch.equal(plain.latents, zero.latents)
    assert (controlled.latents - plain.latents).abs().mean() > 1e-3
    assert (controlled.latents - other.latents).abs().mean() > 1e-4


@pytest.mark.parametrize("mode, rows_seen", [(ControlMode.CONTROL, 1), (ControlMode.BALANCED, 2)])
def test_controlnet_priority_runs_the_sdxl_controlnet_on_cond_rows_with_their_y(sdxl_pipeline, sdxl_controlnet,
                                                                                hint, mode, rows_seen):
    seen = []

    def record(module, args, kwargs):
        seen.append((args[0].shape[0], args[4].clone()))

    handle = sdxl_controlnet.net.register_forward_pre_hook(record, with_kwargs=True)
    try:
        with UNetCalls(sdxl_pipeline.model.unet) as unet_calls:
            sdxl_pipeline.generate(small(steps=2, units=[BoundUnit(sdxl_controlnet, hint, control_mode=mode)]))
    finally:
        handle.remove()
    assert [rows for rows, _ in seen] == [rows_seen] * 2
    assert torch.equal(seen[0][1], unet_calls.calls[0]["y"][:rows_seen])


def test_an_sd1_controlnet_on_sdxl_fails_naming_unit_and_field(sdxl_pipeline, controlnet, hint):
    with pytest.raises(IncompatibleModelError) as info:
        sdxl_pipeline.generate(small(units=[BoundUnit(controlnet, hint, index=2)]))
    assert info.value.unit == 2 and info.value.field == "model" and "sdxl" in info.value.message


def test_odd_sizes_with_and_without_a_unit(sdxl_pipeline, sdxl_controlnet, hint):
    before = hook_count(sdxl_pipeline.model.unet)
    plain = sdxl_pipeline.generate(small(width=72, height=88, steps=2))
    controlled = sdxl_pipeline.generate(small(width=72, height=88, steps=2, units=[BoundUnit(sdxl_controlnet, hint)]))
    assert plain.images[0].size == controlled.images[0].size == (72, 88)
    assert (controlled.latents - plain.latents).abs().mean() > 1e-3
    assert hook_count(sdxl_pipeline.model.unet) == before


def _init_image(size=64) -> Image.Image:
    ramp = np.linspace(0, 255, size, dtype=np.uint8)
    return Image.fromarray(np.dstack([np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size)),
                                      np.full((size, size), 90, np.uint8)]))


def test_sdxl_img2img_and_inpainting(sdxl_pipeline, sdxl_controlnet, hint):
    image = _init_image()
    vae = sdxl_pipeline.model.vae
    init_latent = vae.encode(to_tensor(image, 64, 64))
    low = sdxl_pipeline.generate(small(init_images=[image], denoising_strength=0.0, steps=10))
    high = sdxl_pipeline.generate(small(init_images=[image], denoising_strength=0.9, steps=10))
    assert (low.latents - init_latent).abs().mean() * 10 < (high.latents - init_latent).abs().mean()
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (32, 0, 64, 64))
    inpainted = sdxl_pipeline.generate(small(init_images=[image], mask=mask, mask_blur=0, denoising_strength=1.0,
                                             units=[BoundUnit(sdxl_controlnet, hint)]))
    assert torch.allclose(inpainted.latents[0, :, :, :4], init_latent[0, :, :, :4], atol=1e-5)
    out = pixels(inpainted)[0].numpy()
    assert np.array_equal(out[:, :32], np.asarray(image, dtype=np.float32)[:, :32])


# --- hires fix --------------------------------------------------------------------------------------------------
def test_hires_fix_upscales_and_denoises_again(sdxl_pipeline):
    seen = []
    base = sdxl_pipeline.generate(small())
    hires = HiresFix(scale=1.5, steps=3, denoising_strength=0.5)
    with UNetCalls(sdxl_pipeline.model.unet) as calls:
        result = sdxl_pipeline.generate(small(hires=hires), on_step=seen.append)
    assert result.images[0].size == (96, 96) and result.latents.shape[-2:] == (12, 12)
    # first pass 4 steps, then exactly 3 hires steps (of a schedule of int(3 / 0.5) = 6), progress over both
    assert [p.step for p in seen] == list(range(1, 8)) and {p.steps for p in seen} == {7}
    hires_call = calls.calls[4]
    assert hires_call["x"].shape[-2:] == (12, 12)
    model = sdxl_pipeline.model
    cond = model.prompts.encode_with_pooled(["a photo of a cat"])
    # the hires pass is conditioned on its own size, as A1111's calculate_hr_conds
    assert torch.equal(hires_call["y"][0], sdxl_vector(cond.pooled, model.adm_in_channels, original=(96, 96),
                                                       target=(96, 96))[0])
    text = result.infotexts[0]
    assert "Size: 64x64" in text and "Hires upscale: 1.5" in text and "Hires steps: 3" in text
    assert "Denoising strength: 0.5" in text
    # the first pass is the plain txt2img's (same seeds), so the hires image grows out of it
    small_again = torch.nn.functional.interpolate(result.latents, size=(8, 8), mode="area")
    assert (small_again - base.latents).abs().mean() < (small_again - base.latents.flip(-1)).abs().mean()


@pytest.mark.parametrize("upscaler", ["Latent (nearest)", "Lanczos"])
def test_hires_fix_other_upscalers_and_resize(sdxl_pipeline, upscaler):
    result = sdxl_pipeline.generate(small(steps=2, hires=HiresFix(resize_x=96, resize_y=80, upscaler=upscaler,
                                                                  steps=1, denoising_strength=0.6)))
    # 64x64 to fit 96x80: upscaled to 96x96, then the latent is cropped to 80 rows (A1111's truncate)
    assert result.images[0].size == (96, 80)
    assert f"Hires upscaler: {upscaler}" in result.infotexts[0] and "Hires resize: 96x80" in result.infotexts[0]


def test_a_unit_in_the_hires_pass_sees_the_hires_hint_and_flag(sdxl_pipeline, sdxl_controlnet, hint):
    sizes = []
    handle = sdxl_controlnet.net.register_forward_pre_hook(
        lambda m, args, kwargs: sizes.append(tuple(kwargs["guided_hint"].shape[-2:])), with_kwargs=True)
    hires = HiresFix(scale=2.0, steps=2, denoising_strength=0.5)
    low_only = BoundUnit(sdxl_controlnet, hint, hr_option="Low res only")
    try:
        sdxl_pipeline.generate(small(steps=2, hires=hires, units=[BoundUnit(sdxl_controlnet, hint)]))
        both = list(sizes)
        sizes.clear()
        sdxl_pipeline.generate(small(steps=2, hires=hires, units=[low_only]))
    finally:
        handle.remove()
    assert both == [(8, 8)] * 2 + [(16, 16)] * 2  # the hint encoder's output at each pass's latent size
    assert sizes == [(8, 8)] * 2  # "Low res only" skips the hires pass


def test_hires_fix_on_sd1_too(pipeline):
    result = pipeline.generate(small(steps=2, hires=HiresFix(scale=1.25, denoising_strength=0.4)))
    assert result.images[0].size == (80, 80)
    # strength 0: A1111's schedule would be empty; the upscaled first pass comes back as it is
    same = pipeline.generate(small(steps=2, hires=HiresFix(scale=2.0, denoising_strength=0.0)))
    plain = pipeline.generate(small(steps=2))
    up = torch.nn.functional.interpolate(plain.latents, size=(16, 16), mode="bilinear", antialias=False)
    assert torch.allclose(same.latents, up)


# --- the whole loop against diffusers ----------------------------------------------------------------------------
def test_one_sampling_loop_equals_hand_written_euler_over_diffusers_unet(sdxl_pipeline):
    """Euler, 4 steps, CFG 7: our pipeline vs k-diffusion's Euler written out, calling diffusers' UNet with the
    same weights (converted by diffusers from the demo file) and the same conditioning."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    from lib_controlnet.models.files import read_safetensors
    from tests.standalone.test_sdxl_parity import UNET_CONFIG

    model = sdxl_pipeline.model
    sd = {k: v.float() for k, v in read_safetensors(model.path).items() if k.startswith("model.diffusion_model.")}
    theirs = UNet2DConditionModel(**UNET_CONFIG)
    theirs.load_state_dict(convert_ldm_unet_checkpoint(sd, dict(UNET_CONFIG)), strict=True)
    theirs.eval()

    request = small(steps=4, cfg_scale=7.0, seed=77)
    ours = sdxl_pipeline.generate(request).latents.double()

    cond = model.prompts.encode_with_pooled([request.prompt])
    uncond = model.prompts.encode_with_pooled([request.negative_prompt])
    context = torch.cat([cond.context, uncond.context])
    added = {"text_embeds": torch.cat([cond.pooled, uncond.pooled]),
             "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2)}
    t, sigmas = uniform_sigmas(4)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(77)).double() * sigmas[0]
    with torch.no_grad():
        for i in range(4):
            s = sigmas[i]
            x_in = (x / (s**2 + 1) ** 0.5).float().expand(2, -1, -1, -1)
            out = theirs(x_in, torch.full((2,), float(t[i])), encoder_hidden_states=context,
                         added_cond_kwargs=added).sample.double()
            eps = out[1:] + 7.0 * (out[:1] - out[1:])
            denoised = x - s * eps
            x = x + (x - denoised) / s * (sigmas[i + 1] - s)
    assert torch.allclose(ours, x, atol=1e-3, rtol=1e-4), (ours - x).abs().max()
