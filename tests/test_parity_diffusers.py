"""Our ControlNet's residuals equal diffusers' ControlNetModel on the same random weights (fp32, <= 1e-5).

Each tiny diffusers model is saved twice: as a diffusers folder (config.json + safetensors) and, through
our own converter, as an original-layout file with the `control_model.` prefix. Both load through
`load_control_model` and must reproduce diffusers' `down_block_res_samples` + `mid_block_res_sample`.
"""

import pytest
import torch

from lib_controlnet import load_control_model
from tests.tiny_models import SD15_LIKE, SDXL_LIKE, diffusers_controlnet, save_ldm_safetensors

pytest.importorskip("diffusers")


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def inputs(config, batch=2, latent=16, seed=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, latent, latent, generator=g)
    hint = torch.rand(batch, 3, latent * 8, latent * 8, generator=g)
    t = torch.tensor([999.0, 321.0][:batch])
    context = torch.randn(batch, 7, config["cross_attention_dim"], generator=g)
    return g, x, hint, t, context


def diffusers_residuals(model, x, hint, t, context, added=None):
    with torch.no_grad():
        down, mid = model(x, t, context, hint, added_cond_kwargs=added, return_dict=False)
    return [*down, mid]


@pytest.fixture(scope="module")
def sd15(tmp_path_factory):
    d = tmp_path_factory.mktemp("sd15")
    model = diffusers_controlnet(SD15_LIKE, seed=11)
    model.save_pretrained(d / "diffusers", safe_serialization=True)
    save_ldm_safetensors(model, d / "tiny_sd15_ldm.safetensors")
    return model, d


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    d = tmp_path_factory.mktemp("sdxl")
    model = diffusers_controlnet(SDXL_LIKE, seed=12)
    model.save_pretrained(d / "diffusers", safe_serialization=True)
    save_ldm_safetensors(model, d / "tiny_sdxl_ldm.safetensors")
    return model, d


SINGLE_DIFFUSERS_FILE = "diffusers/diffusion_pytorch_model.safetensors"


@pytest.mark.parametrize("layout", ["diffusers", "tiny_sd15_ldm.safetensors", SINGLE_DIFFUSERS_FILE])
def test_sd15_like_matches_diffusers(sd15, layout):
    model, d = sd15
    _, x, hint, t, context = inputs(SD15_LIKE)
    expected = diffusers_residuals(model, x, hint, t, context)

    ours = load_control_model(d / layout)
    assert ours.family == "sd1" and ours.kind == "controlnet"
    got = ours(x, hint, t, context)

    assert len(got) == len(expected) == 13
    for i, (a, b) in enumerate(zip(got, expected)):
        assert a.shape == b.shape, i
        assert b.abs().max() > 1e-3, f"residual {i} is ~0: the test would not see a wrong layer"
        assert rel_err(a, b) <= 1e-5, (i, rel_err(a, b))


@pytest.mark.parametrize("layout", ["diffusers", "tiny_sdxl_ldm.safetensors", SINGLE_DIFFUSERS_FILE])
def test_sdxl_like_matches_diffusers(sdxl, layout):
    model, d = sdxl
    g, x, hint, t, context = inputs(SDXL_LIKE)
    text_embeds = torch.randn(2, 32, generator=g)
    time_ids = torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024], [768.0, 512, 16, 8, 768, 512]])
    expected = diffusers_residuals(model, x, hint, t, context, {"text_embeds": text_embeds, "time_ids": time_ids})

    # sgm's conditioner builds y = [pooled text, sinusoidal(time ids)]; diffusers computes the same inside.
    time_embeds = model.add_time_proj(time_ids.flatten()).reshape(2, -1)
    y = torch.cat([text_embeds, time_embeds], dim=-1)

    ours = load_control_model(d / layout)
    assert ours.family == "sdxl"
    got = ours(x, hint, t, context, y)

    assert len(got) == len(expected) == 10
    for i, (a, b) in enumerate(zip(got, expected)):
        assert a.shape == b.shape, i
        assert b.abs().max() > 1e-3, i
        assert rel_err(a, b) <= 1e-5, (i, rel_err(a, b))
