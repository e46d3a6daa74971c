"""Revision on an SDXL-shaped ldm UNet (class-conditional, 2816-wide y): the pooled-text part of y becomes the
noised CLIP-G image embedding on the cond rows (zeros on the uncond rows), units add up, ignore_prompt zeroes
the context; each case against the UNet called by hand with the expected inputs."""

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from lib_controlnet import CallInfo, ControlHook, IncompatibleModelError, ModelCache
from lib_controlnet.controls import ControlRequest, build
from lib_controlnet.controls.revision import Revision
from lib_controlnet.generation import GenerationInputs, prepare_units
from lib_controlnet.models.registry import ModelRegistry
from lib_controlnet.preprocessors import ResultCache, default_registry
from lib_controlnet.preprocessors.declaration import Params
from lib_controlnet.units.unit import Unit
from tests.tiny_models import SD_LIKE_UNET, SDXL_LAYOUT_UNET, ldm_unet


@pytest.fixture(scope="module")
def xl():
    # sdkit's ldm predates sgm's `num_classes="sequential"`: build it "continuous", then give it SDXL's
    # label_emb (2816 -> time embedding width, as sgm's UNet has it); its forward adds label_emb(y) either way
    unet = ldm_unet({**SDXL_LAYOUT_UNET, "num_classes": "continuous"}, seed=3)
    width = unet.time_embed[0].out_features
    torch.manual_seed(4)
    unet.label_emb = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(2816, width), torch.nn.SiLU(),
                                                             torch.nn.Linear(width, width))).eval()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 16, 16, generator=g)
    t = torch.tensor([400.0, 400.0])
    ctx = torch.randn(2, 3, 64, generator=g)
    y = torch.randn(2, 2816, generator=g)
    return unet, x, t, ctx, y


def revision(module="revision_clipvision", embeds=None, weight=1.0, noise=0.3, seed=11, **kw):
    embeds = torch.randn(1, 1280, generator=torch.Generator().manual_seed(5)) if embeds is None else embeds
    req = ControlRequest(index=kw.pop("index", 0), module=module, params=Params(slider_1=noise), maps=[],
                         embeddings=[{"image_embeds": embeds}], weight=weight, seed=seed, **kw)
    return build("revision", req).effects


def noised(embeds, noise, seed):
    """q_sample on ldm's default linear schedule (1e-4 .. 2e-2), t = int(1000·noise), seeded noise."""
    betas = torch.linspace(1e-4**0.5, 2e-2**0.5, 1000, dtype=torch.float64) ** 2
    a_bar = torch.cumprod(1 - betas, 0)[int(noise * 1000)]
    eps = torch.randn(embeds.shape, generator=torch.Generator().manual_seed(seed))
    return (a_bar.sqrt() * embeds + (1 - a_bar).sqrt() * eps).float()


def run(unet, effects, x, t, ctx, y, info):
    with torch.no_grad(), ControlHook(unet, effects, lambda *a: info, family="sdxl").applied():
        return unet(x, t, ctx, y)


def test_revision_replaces_the_pooled_text_on_cond_rows(xl):
    unet, x, t, ctx, y = xl
    embeds = torch.randn(1, 1280, generator=torch.Generator().manual_seed(5))
    out = run(unet, revision(weight=0.8), x, t, ctx, y, CallInfo(cond_rows=(0,)))
    expected_y = y.clone()
    expected_y[0, :1280] = 0.8 * noised(embeds, 0.3, 11)[0]
    expected_y[1, :1280] = 0.0  # uncond row
    with torch.no_grad():
        assert torch.allclose(out, unet(x, t, ctx, expected_y), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(out, unet(x, t, ctx, y), atol=1e-4)


def test_two_units_add_up_and_ignore_prompt_zeroes_the_context(xl):
    unet, x, t, ctx, y = xl
    a = torch.randn(1, 1280, generator=torch.Generator().manual_seed(6))
    b = torch.randn(1, 1280, generator=torch.Generator().manual_seed(7))
    units = revision(embeds=a, noise=0.0, seed=1) + revision("revision_ignore_prompt", embeds=b, weight=0.5,
                                                             noise=0.0, seed=2)
    out = run(unet, units, x, t, ctx, y, CallInfo(cond_rows=(0,)))
    expected_y = y.clone()
    expected_y[0, :1280] = noised(a, 0.0, 1)[0] + 0.5 * noised(b, 0.0, 2)[0]
    expected_y[1, :1280] = 0.0
    with torch.no_grad():
        assert torch.allclose(out, unet(x, t, torch.zeros_like(ctx), expected_y), rtol=1e-4, atol=1e-5)


def test_empty_prompts_also_ignore_the_text(xl):
    unet, x, t, ctx, y = xl
    (unit,) = revision(empty_prompts=True)
    assert unit.ignore_prompt
    (unit,) = revision()
    assert not unit.ignore_prompt


@pytest.mark.parametrize("kwargs, info", [({"weight": 0.0}, CallInfo()),
                                          ({"guidance_end": 0.2}, CallInfo(fraction=0.5))])
def test_an_inactive_revision_unit_changes_nothing(xl, kwargs, info):
    unet, x, t, ctx, y = xl
    with torch.no_grad():
        assert torch.equal(run(unet, revision(**kwargs), x, t, ctx, y, info), unet(x, t, ctx, y))


def test_revision_refuses_a_checkpoint_that_is_not_sdxl():
    unet = ldm_unet(SD_LIKE_UNET, seed=1)
    with pytest.raises(IncompatibleModelError) as e:
        ControlHook(unet, revision(index=2), family="sd1")
    assert e.value.field == "module" and "SDXL" in str(e.value)


def test_a_revision_unit_needs_no_model_and_no_map(tmp_path):
    """prepare_units: the CLIP-G encoder from the annotator folder, model "None", no detected map."""
    from annotator.neural.weights import set_weights_folder

    torch.manual_seed(0)
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=16, patch_size=14,
        image_size=224, projection_dim=1280)).eval()
    save_file(encoder.state_dict(), str(tmp_path / "clip_g.safetensors"))
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(buffer, format="PNG")
    unit = Unit.from_dict({"enabled": True, "module": "revision_clipvision", "model": "None",
                           "image": base64.b64encode(buffer.getvalue()).decode(), "threshold_a": 0.2})
    set_weights_folder(tmp_path)
    try:
        (pu,) = prepare_units([unit], GenerationInputs(width=64, height=64), models=ModelRegistry([tmp_path]),
                              model_cache=ModelCache(), preprocessors=default_registry(), result_cache=ResultCache(0))
    finally:
        set_weights_folder()
    assert isinstance(pu.bound, Revision) and pu.detected_maps == [] and len(pu.effects) == 1
    assert pu.bound.t == 200 and pu.unit.model == "None"
