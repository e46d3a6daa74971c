"""T2I-Adapters: the networks against diffusers' `T2IAdapter` (full, light, full XL) and transformers' CLIP
encoder layers (style), loaded from diffusers' layout and TencentARC's original one; then the units on ldm's
UNetModel (stable-diffusion-sdkit): where features land, when they are computed, modes, removal.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lib_controlnet import CallInfo, ControlHook, ControlMode, IncompatibleModelError, InputError, load_control_model
from lib_controlnet.hook.call import MIDDLE
from lib_controlnet.hook.cfg_rows import CfgBatchRows
from lib_controlnet.kinds.t2i_adapter_unit import AdapterUnit, StyleUnit
from lib_controlnet.models.detection import detect
from tests.test_hook_ldm import hook_state
from tests.test_hook_protocol import plain_unet
from tests.tiny_kinds import (
    TINY_T2I_CHANNELS,
    TINY_T2I_XL_CHANNELS,
    diffusers_t2i,
    original_to_diffusers_names,
    save_t2i_diffusers_file,
    save_t2i_diffusers_folder,
    save_t2i_original,
    style_state_dict,
)
from tests.tiny_models import SD_LIKE_UNET, SDXL_LAYOUT_UNET, ldm_unet

SOFT = (0.25, 0.62, 0.825, 1.0)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def close(a, b):
    return torch.allclose(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())


SAVERS = {
    "original": lambda ad, d: save_t2i_original(ad, d / "t2iadapter_sd14v1.safetensors"),
    "diffusers file": lambda ad, d: save_t2i_diffusers_file(ad, d / "t2i-adapter.safetensors"),
    "diffusers folder": lambda ad, d: save_t2i_diffusers_folder(ad, d / "t2i-adapter"),
}
ADAPTERS = {  # (diffusers adapter_type, input channels, channels, hint size, family)
    "full": ("full_adapter", 3, TINY_T2I_CHANNELS, 128, "sd1"),
    "full grey": ("full_adapter", 1, TINY_T2I_CHANNELS, 128, "sd1"),
    "light": ("light_adapter", 3, TINY_T2I_CHANNELS, 128, "sd1"),
    "full XL": ("full_adapter_xl", 3, TINY_T2I_XL_CHANNELS, 128, "sdxl"),
    "full XL grey": ("full_adapter_xl", 1, TINY_T2I_XL_CHANNELS, 160, "sdxl"),
}


@pytest.mark.parametrize("layout", list(SAVERS))
@pytest.mark.parametrize("name", list(ADAPTERS))
def test_features_equal_diffusers(tmp_path, name, layout):
    adapter_type, cin, channels, size, family = ADAPTERS[name]
    adapter = diffusers_t2i(adapter_type, in_channels=cin, channels=channels, seed=3)
    model = load_control_model(SAVERS[layout](adapter, tmp_path))
    assert (model.kind, model.family, model.in_channels) == ("t2i_adapter", family, cin)
    hint = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = adapter(hint[:, :cin])  # grey adapters read channel 0 of the RGB map, as the reference
    got = model(None, hint, None, None)
    assert len(got) == len(expected) == 4
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        assert rel(g, e) <= 1e-5


def test_grey_adapters_ignore_channels_1_and_2(tmp_path):
    model = load_control_model(save_t2i_original(diffusers_t2i(in_channels=1, seed=4), tmp_path / "sketch.safetensors"))
    hint = torch.rand(1, 3, 64, 64)
    other = hint.clone()
    other[:, 1:] = torch.rand(1, 2, 64, 64)
    for a, b in zip(model(None, hint), model(None, other)):
        assert torch.equal(a, b)


def test_sdxl_hint_is_rounded_up_to_the_unshuffle_factor(tmp_path):
    adapter = diffusers_t2i("full_adapter_xl", channels=TINY_T2I_XL_CHANNELS, seed=5)
    model = load_control_model(save_t2i_original(adapter, tmp_path / "xl.safetensors"))
    hint = torch.rand(1, 3, 120, 136)  # a 15x17 latent: no multiple of 16
    with torch.no_grad():
        expected = adapter(F.interpolate(hint, size=(128, 144), mode="bilinear", align_corners=False))
    for g, e in zip(model(None, hint), expected):
        assert g.shape == e.shape and rel(g, e) <= 1e-5


def published_adapter_shapes(adapter_type: str, in_channels: int, **kw) -> dict:
    """Key names and shapes of TencentARC's published files (diffusers' default configs are theirs)."""
    from diffusers import T2IAdapter

    with torch.device("meta"):
        adapter = T2IAdapter(in_channels=in_channels, adapter_type=adapter_type,
                             downscale_factor=16 if adapter_type == "full_adapter_xl" else 8, **kw)
    shapes = {k: tuple(v.shape) for k, v in adapter.state_dict().items()}
    return {orig: shapes[d] for orig, d in original_to_diffusers_names(adapter).items()}


@pytest.mark.parametrize("adapter_type, cin, kw, fmt, family, grey", [
    ("full_adapter", 3, {}, "t2i-adapter", "sd1", False),  # t2iadapter_depth/seg/keypose_sd14v1, *_sd15v2
    ("full_adapter", 1, {}, "t2i-adapter", "sd1", True),  # t2iadapter_sketch/canny_sd14v1
    ("light_adapter", 3, dict(channels=[320, 640, 1280], num_res_blocks=4), "t2i-adapter-light", "sd1", False),
    ("full_adapter_xl", 3, {}, "t2i-adapter", "sdxl", False),  # TencentARC t2i-adapter-*-sdxl-1.0
    ("full_adapter_xl", 1, {}, "t2i-adapter", "sdxl", True),  # sketch/canny/lineart SDXL
])
def test_published_layouts_are_detected(adapter_type, cin, kw, fmt, family, grey):
    shapes = published_adapter_shapes(adapter_type, cin, **kw)
    det = detect(shapes)
    assert (det.format, det.kind, det.family) == (fmt, "t2i_adapter", family)
    assert det.arch.channels == (320, 640, 1280, 1280)
    assert det.arch.in_channels == (1 if grey else 3)
    assert det.arch.unshuffle == (16 if family == "sdxl" else 8)
    # the diffusers layout of the same file is detected as the same network
    from diffusers import T2IAdapter

    with torch.device("meta"):
        adapter = T2IAdapter(in_channels=cin, adapter_type=adapter_type,
                             downscale_factor=16 if adapter_type == "full_adapter_xl" else 8, **kw)
    diffusers_det = detect({k: tuple(v.shape) for k, v in adapter.state_dict().items()})
    assert (diffusers_det.format, diffusers_det.arch) == ("diffusers-t2i-adapter", det.arch)


def test_published_style_adapter_is_detected():
    with torch.device("meta"):
        sd = style_state_dict(width=1024)
    det = detect({k: tuple(v.shape) for k, v in sd.items()})
    assert (det.format, det.kind, det.family) == ("t2i-style-adapter", "t2i_style_adapter", "sd1")
    assert (det.arch.width, det.arch.context_dim, det.arch.num_tokens, det.arch.layers) == (1024, 768, 8, 3)


# --- style adapter ------------------------------------------------------------------------------------------------

def style_oracle(sd: dict, image_tokens: torch.Tensor, heads: int = 8) -> torch.Tensor:
    """The style adapter computed with transformers' CLIP encoder layers (quick_gelu, pre-LN)."""
    from transformers import CLIPVisionConfig
    from transformers.models.clip.modeling_clip import CLIPEncoderLayer

    width = sd["style_embedding"].shape[-1]
    config = CLIPVisionConfig(hidden_size=width, num_attention_heads=heads, intermediate_size=4 * width,
                              hidden_act="quick_gelu", layer_norm_eps=1e-5, attn_implementation="eager")
    layers = []
    for i in range(3):
        p = f"transformer_layes.{i}."
        q, k, v = sd[p + "attn.in_proj_weight"].chunk(3)
        qb, kb, vb = sd[p + "attn.in_proj_bias"].chunk(3)
        layer = CLIPEncoderLayer(config).eval()
        layer.load_state_dict({
            "self_attn.q_proj.weight": q, "self_attn.q_proj.bias": qb, "self_attn.k_proj.weight": k,
            "self_attn.k_proj.bias": kb, "self_attn.v_proj.weight": v, "self_attn.v_proj.bias": vb,
            "self_attn.out_proj.weight": sd[p + "attn.out_proj.weight"],
            "self_attn.out_proj.bias": sd[p + "attn.out_proj.bias"],
            "layer_norm1.weight": sd[p + "ln_1.weight"], "layer_norm1.bias": sd[p + "ln_1.bias"],
            "layer_norm2.weight": sd[p + "ln_2.weight"], "layer_norm2.bias": sd[p + "ln_2.bias"],
            "mlp.fc1.weight": sd[p + "mlp.c_fc.weight"], "mlp.fc1.bias": sd[p + "mlp.c_fc.bias"],
            "mlp.fc2.weight": sd[p + "mlp.c_proj.weight"], "mlp.fc2.bias": sd[p + "mlp.c_proj.bias"],
        })
        layers.append(layer)
    n = image_tokens.shape[0]
    x = torch.cat([image_tokens, sd["style_embedding"].expand(n, -1, -1)], dim=1)
    x = F.layer_norm(x, (width,), sd["ln_pre.weight"], sd["ln_pre.bias"])
    with torch.no_grad():
        for layer in layers:
            x = layer(x, None, None)[0]
    tokens = sd["style_embedding"].shape[1]
    x = F.layer_norm(x[:, -tokens:], (width,), sd["ln_post.weight"], sd["ln_post.bias"])
    return x @ sd["proj"]


def save_style(tmp_path, width=64):
    from safetensors.torch import save_file

    sd = style_state_dict(width=width, seed=2)
    path = tmp_path / "t2iadapter_style_sd14v1.safetensors"
    save_file(sd, str(path))
    return sd, path


def test_style_adapter_equals_clip_encoder_layers(tmp_path):
    sd, path = save_style(tmp_path)
    model = load_control_model(path)
    assert (model.kind, model.family, model.num_tokens) == ("t2i_style_adapter", "sd1", 8)
    image_tokens = torch.randn(2, 17, 64, generator=torch.Generator().manual_seed(3))
    got = model(None, image_tokens)
    expected = style_oracle(sd, image_tokens)
    assert got.shape == (2, 8, 768)
    assert rel(got, expected) <= 1e-5


# --- on the UNet --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sd15(tmp_path_factory):
    d = tmp_path_factory.mktemp("t2i")
    unet = ldm_unet(SD_LIKE_UNET, seed=5)
    model = load_control_model(save_t2i_original(diffusers_t2i(seed=6), d / "t2iadapter_depth_sd14v1.safetensors"))
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 4, 16, 16, generator=g)
    t = torch.tensor([800.0, 800.0])
    ctx = torch.randn(2, 5, 32, generator=g)
    hint = torch.rand(1, 3, 128, 128, generator=g)
    return unet, model, x, t, ctx, hint


def run(unet, units, x, t, ctx, info=None, family=None):
    with torch.no_grad(), ControlHook(unet, units, lambda *a: info or CallInfo(), family=family).applied():
        return unet(x, t, ctx)


def expected(unet, model, x, t, ctx, hint, scales, points, rows=None):
    features = {}
    for point, f, s in zip(points, model(x, hint), scales):
        f = (f * s).expand(x.shape[0], -1, -1, -1).clone()
        if rows is not None:
            keep = torch.zeros(x.shape[0], 1, 1, 1)
            keep[list(rows)] = 1
            f = f * keep
        features[point] = f
    with torch.no_grad():
        return plain_unet(unet, x, t, ctx, features=features)


def test_features_land_after_input_blocks_2_5_8_11(sd15):
    unet, model, x, t, ctx, hint = sd15
    out = run(unet, [AdapterUnit(model, hint, weight=0.7)], x, t, ctx)
    assert close(out, expected(unet, model, x, t, ctx, hint, [0.7] * 4, (2, 5, 8, 11)))
    moved = expected(unet, model, x, t, ctx, hint, [0.7] * 4, (1, 4, 7, 10))  # same shapes, one block early
    assert not close(out, moved)
    with torch.no_grad():
        assert not close(out, unet(x, t, ctx))


def test_sdxl_features_land_after_3_5_8_and_the_middle_block(tmp_path):
    unet = ldm_unet(SDXL_LAYOUT_UNET, seed=8)
    adapter = diffusers_t2i("full_adapter_xl", channels=TINY_T2I_XL_CHANNELS, seed=9)
    model = load_control_model(save_t2i_diffusers_folder(adapter, tmp_path / "t2i-adapter-canny-sdxl-1.0"))
    g = torch.Generator().manual_seed(1)
    x, ctx = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 3, 64, generator=g)
    t = torch.tensor([500.0, 500.0])
    hint = torch.rand(1, 3, 128, 128, generator=g)
    out = run(unet, [AdapterUnit(model, hint)], x, t, ctx, family="sdxl")
    assert close(out, expected(unet, model, x, t, ctx, hint, [1.0] * 4, (3, 5, 8, MIDDLE)))
    assert not close(out, expected(unet, model, x, t, ctx, hint, [1.0] * 4, (3, 4, 7, MIDDLE)))


def test_prompt_mode_uses_the_adapter_soft_scales_on_both_halves(sd15):
    unet, model, x, t, ctx, hint = sd15
    unit = AdapterUnit(model, hint, weight=0.8, control_mode=ControlMode.PROMPT)
    out = run(unet, [unit], x, t, ctx, CallInfo(cond_rows=(0,)))
    assert close(out, expected(unet, model, x, t, ctx, hint, [0.8 * s for s in SOFT], (2, 5, 8, 11)))


def test_controlnet_mode_soft_scales_on_cond_rows_only(sd15):
    unet, model, x, t, ctx, hint = sd15
    unit = AdapterUnit(model, hint, weight=0.8, control_mode=ControlMode.CONTROL)
    out = run(unet, [unit], x, t, ctx, CallInfo(cond_rows=(0,)))
    assert close(out, expected(unet, model, x, t, ctx, hint, [0.8 * s for s in SOFT], (2, 5, 8, 11), rows=(0,)))
    with torch.no_grad():
        plain = unet(x, t, ctx)
    assert close(out[1], plain[1]) and not close(out[0], plain[0])
    # an uncond-only call: nothing added at all
    assert torch.equal(run(unet, [unit], x[1:], t[1:], ctx[1:], CallInfo(cond_rows=())), unet(x[1:], t[1:], ctx[1:]))


def test_features_are_computed_once_per_generation_and_per_hires_size(sd15):
    unet, model, x, t, ctx, hint = sd15
    forwards = []
    handle = model.net.register_forward_hook(lambda *a: forwards.append(1))
    rows = CfgBatchRows()
    unit = AdapterUnit(model, hint, hint_hires=torch.rand(1, 3, 192, 192))
    try:
        hook = ControlHook(unet, [unit], rows)
        with torch.no_grad(), hook.applied():
            for step in range(4):
                rows.start_step(1, 1, fraction=step / 4)
                unet(x, t, ctx)
            assert len(forwards) == 1
            x_hr = torch.randn(2, 4, 24, 24)
            for step in range(2):
                rows.start_step(1, 1, fraction=step / 2, hires=True)
                unet(x_hr, t, ctx)
            assert len(forwards) == 2
        assert hook.runs == 2
        with torch.no_grad(), hook.applied():  # a new generation computes them again
            rows.start_step(1, 1, fraction=0.0)
            unet(x, t, ctx)
        assert len(forwards) == 3
    finally:
        handle.remove()


def test_outside_its_window_the_unet_is_untouched(sd15):
    unet, model, x, t, ctx, hint = sd15
    unit = AdapterUnit(model, hint, guidance_start=0.5)
    with torch.no_grad():
        assert torch.equal(run(unet, [unit], x, t, ctx, CallInfo(fraction=0.2)), unet(x, t, ctx))


def test_region_mask_and_two_units_sum(sd15):
    unet, model, x, t, ctx, hint = sd15
    mask = torch.zeros(128, 128)
    mask[:, :64] = 1
    other = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(9))
    out = run(unet, [AdapterUnit(model, hint, effective_region_mask=mask), AdapterUnit(model, other, weight=0.5)],
              x, t, ctx)
    features = {}
    for point, a, b in zip((2, 5, 8, 11), model(x, hint), model(x, other)):
        m = F.interpolate(mask[None, None], size=a.shape[-2:], mode="bilinear", align_corners=False)
        features[point] = (a * m + b * 0.5).expand(2, -1, -1, -1)
    with torch.no_grad():
        assert close(out, plain_unet(unet, x, t, ctx, features=features))


def test_removal_is_exact_also_after_an_error(sd15):
    unet, model, x, t, ctx, hint = sd15
    before = hook_state(unet)
    with torch.no_grad():
        baseline = unet(x, t, ctx)
    hook = ControlHook(unet, [AdapterUnit(model, hint)])
    with pytest.raises(RuntimeError, match="sampler failed"), hook.applied(), torch.no_grad():
        unet(x, t, ctx)
        raise RuntimeError("sampler failed")
    assert hook_state(unet) == before
    with torch.no_grad():
        assert torch.equal(unet(x, t, ctx), baseline)


def test_an_adapter_of_the_other_family_fails_naming_unit_and_field(sd15, tmp_path):
    unet, model, x, t, ctx, hint = sd15
    xl = load_control_model(save_t2i_original(diffusers_t2i("full_adapter_xl", channels=TINY_T2I_XL_CHANNELS),
                                              tmp_path / "xl.safetensors"))
    with pytest.raises(IncompatibleModelError) as e:
        ControlHook(unet, [AdapterUnit(xl, hint, index=2)], family="sd1")
    assert (e.value.unit, e.value.field) == (2, "model") and "sdxl" in e.value.message
    with pytest.raises(IncompatibleModelError, match="SDXL T2I-Adapter") as e:  # no family known: the layout says
        ControlHook(unet, [AdapterUnit(xl, hint, index=1)])
    assert (e.value.unit, e.value.field) == (1, "model")


def test_advanced_weighting_takes_four_values(sd15):
    unet, model, x, t, ctx, hint = sd15
    out = run(unet, [AdapterUnit(model, hint, advanced_weighting=[0.1, 0.0, 2.0, 0.5])], x, t, ctx)
    assert close(out, expected(unet, model, x, t, ctx, hint, [0.1, 0.0, 2.0, 0.5], (2, 5, 8, 11)))
    with pytest.raises(InputError, match="4 for T2I-Adapters") as e:
        AdapterUnit(model, hint, advanced_weighting=[1.0] * 13, index=3)
    assert (e.value.unit, e.value.field) == (3, "advanced_weighting")


# --- style adapter on the UNet ------------------------------------------------------------------------------------

def test_style_tokens_are_appended_to_cond_rows_times_weight(tmp_path):
    unet = ldm_unet(dict(SD_LIKE_UNET, context_dim=768), seed=3)
    sd, path = save_style(tmp_path)
    model = load_control_model(path)
    g = torch.Generator().manual_seed(4)
    x, t = torch.randn(2, 4, 16, 16, generator=g), torch.tensor([600.0, 600.0])
    ctx = torch.randn(2, 5, 768, generator=g)
    image_tokens = torch.randn(1, 17, 64, generator=g)
    unit = StyleUnit(model, image_tokens, weight=0.6, control_mode=ControlMode.PROMPT)
    out = run(unet, [unit], x, t, ctx, CallInfo(cond_rows=(0,)))
    tokens = style_oracle(sd, image_tokens) * 0.6
    extended = torch.cat([ctx, torch.cat([tokens, torch.zeros_like(tokens)])], dim=1)
    with torch.no_grad():
        assert close(out, unet(x, t, extended))
    # an uncond-only call gets zero tokens (one context length for every row, as the reference)
    out = run(unet, [unit], x[1:], t[1:], ctx[1:], CallInfo(cond_rows=()))
    with torch.no_grad():
        assert close(out, unet(x[1:], t[1:], torch.cat([ctx[1:], torch.zeros_like(tokens)], dim=1)))


def test_style_adapter_given_an_image_names_the_clip_preprocessor(tmp_path):
    _, path = save_style(tmp_path)
    model = load_control_model(path)
    with pytest.raises(InputError, match="t2ia_style_clipvision.*clip_vision.*not an image map") as e:
        StyleUnit(model, torch.rand(1, 3, 128, 128), index=1)
    assert (e.value.unit, e.value.field) == (1, "module")
