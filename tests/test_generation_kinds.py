"""T2I-Adapter and Control-LoRA files through what both hosts run: the model folder, the panel's family filter,
`prepare_units` (cache, preprocessor, unit class by kind) and the hook on ldm's UNetModel."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from lib_controlnet import CallInfo, ControlHook, IncompatibleModelError, InputError, ModelCache
from lib_controlnet.generation import GenerationInputs, prepare_units
from lib_controlnet.kinds.controlnet_unit import BoundUnit
from lib_controlnet.kinds.t2i_adapter_unit import AdapterUnit
from lib_controlnet.models.registry import ModelRegistry
from lib_controlnet.preprocessors import ResultCache, default_registry
from lib_controlnet.ui.control_type_filter import models_for_family, type_choices
from lib_controlnet.ui.model_family import model_family
from lib_controlnet.units.unit import Unit
from tests.test_hook_ldm import hook_state
from tests.tiny_kinds import (
    TINY_T2I_XL_CHANNELS,
    control_lora_state_dict,
    diffusers_t2i,
    save_t2i_diffusers_folder,
    save_t2i_original,
    style_state_dict,
)
from tests.tiny_models import SD_LIKE_UNET, controlnet_state_dict_from_unet, ldm_unet


def b64png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ControlNet")
    unet = ldm_unet(SD_LIKE_UNET, seed=11)
    save_t2i_original(diffusers_t2i(seed=12), folder / "t2iadapter_depth_sd14v1.safetensors")
    save_t2i_diffusers_folder(diffusers_t2i("full_adapter_xl", channels=TINY_T2I_XL_CHANNELS, seed=13),
                              folder / "t2i-adapter-canny-xl")  # no "xl"/"sd" hint a name filter could read
    save_file(control_lora_state_dict(controlnet_state_dict_from_unet(unet, seed=14), rank=4),
              str(folder / "control-lora-canny-rank4.safetensors"))
    save_file(style_state_dict(seed=15), str(folder / "t2iadapter_style_sd14v1.safetensors"))
    registry = ModelRegistry([folder])
    image = np.zeros((64, 64, 3), np.uint8)
    image[16:48, 16:48] = 255
    return registry, unet, folder, image


def prepare(env, units, cache=None, **inputs):
    registry, unet, _, _ = env
    args = dict(width=128, height=128, base_unet=unet.state_dict(keep_vars=True), base_id="ckpt-1")
    args.update(inputs)
    return prepare_units([Unit.from_dict(u, index=i) for i, u in enumerate(units)], GenerationInputs(**args),
                         models=registry, model_cache=ModelCache() if cache is None else cache,
                         preprocessors=default_registry(), result_cache=ResultCache())


def sample(unet, units, steps=3):
    g = torch.Generator().manual_seed(1)
    x, ctx = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 5, 32, generator=g)
    t = torch.tensor([600.0, 600.0])
    outs = []
    hook = ControlHook(unet, units, lambda *a: CallInfo(cond_rows=(0,)), family="sd1")
    with torch.no_grad(), hook.applied():
        for _ in range(steps):
            outs.append(unet(x, t, ctx))
    with torch.no_grad():
        plain = unet(x, t, ctx)
    return outs, plain


def test_t2i_and_control_lora_units_generate_and_leave_the_unet_as_it_was(env):
    registry, unet, _, image = env
    state = {k: v.clone() for k, v in unet.state_dict().items()}
    hooks = hook_state(unet)
    t2i, lora = prepare(env, [
        {"module": "none", "model": "t2iadapter_depth_sd14v1", "image": b64png(image), "weight": 0.8},
        {"module": "canny", "model": "control-lora-canny", "image": b64png(image), "control_mode": 1},
    ])
    assert isinstance(t2i.bound, AdapterUnit) and t2i.bound.model.kind == "t2i_adapter"
    assert type(lora.bound) is BoundUnit and lora.bound.model.kind == "control_lora"
    assert t2i.unit.model.startswith("t2iadapter_depth_sd14v1 [")  # infotext records the resolved name
    for units in ([t2i.bound], [lora.bound], [t2i.bound, lora.bound]):
        outs, plain = sample(unet, units)
        assert all(not torch.allclose(o, plain) for o in outs)
    assert hook_state(unet) == hooks
    assert all(torch.equal(v, state[k]) for k, v in unet.state_dict().items())


def test_control_lora_is_rebuilt_for_another_checkpoint(env):
    registry, unet, _, image = env
    cache = ModelCache()
    payload = [{"module": "canny", "model": "control-lora-canny", "image": b64png(image)}]
    (a,) = prepare(env, payload, cache=cache)
    (b,) = prepare(env, payload, cache=cache)
    (c,) = prepare(env, payload, cache=cache, base_id="ckpt-2")
    assert a.bound.model is b.bound.model and c.bound.model is not a.bound.model


def test_a_kind_of_the_other_family_fails_naming_unit_and_field(env):
    registry, unet, _, image = env
    (xl,) = prepare(env, [
        {"enabled": False},
        {"module": "canny", "model": "t2i-adapter-canny-xl", "image": b64png(image)},
    ])
    assert xl.index == 1 and xl.bound.model.family == "sdxl"
    with pytest.raises(IncompatibleModelError) as e:
        ControlHook(unet, [xl.bound], family="sd1")
    assert (e.value.unit, e.value.field) == (1, "model")


def test_style_adapter_given_a_map_names_the_clip_preprocessor(env, clip_vitl):
    registry, unet, _, image = env
    with pytest.raises(InputError, match="t2ia_style_clipvision") as e:
        prepare(env, [{"module": "none", "model": "t2iadapter_style_sd14v1", "image": b64png(image)}])
    assert (e.value.unit, e.value.field) == (0, "module")
    with pytest.raises(InputError, match="image embeddings") as e:  # and a feature adapter given CLIP embeddings
        prepare(env, [{"module": "clip_vision", "model": "t2iadapter_depth_sd14v1", "image": b64png(image)}])
    assert (e.value.unit, e.value.field) == (0, "module")


@pytest.fixture()
def clip_vitl(tmp_path):
    """A random CLIP ViT-L-layout image encoder (transformers' layout, OpenAI's quick_gelu) at width 64."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from annotator.neural.weights import set_weights_folder

    torch.manual_seed(5)
    net = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=16, patch_size=14,
        image_size=224, projection_dim=32, layer_norm_eps=1e-5, hidden_act="quick_gelu")).eval()
    save_file(net.state_dict(), str(tmp_path / "clip_vitl.safetensors"))
    set_weights_folder(tmp_path)
    yield net
    set_weights_folder()


def test_style_adapter_from_t2ia_style_clipvision(env, clip_vitl):
    """t2ia_style_clipvision -> CLIP-L last_hidden_state -> 8 tokens x weight on the cond rows: against
    transformers' CLIP vision model and the style adapter written with transformers' CLIP layers."""
    import cv2

    from annotator.neural.clip_vision import MEAN, STD
    from lib_controlnet.kinds.t2i_adapter_unit import StyleUnit
    from tests.test_t2i_adapter import style_oracle

    registry, _, folder, image = env
    (p,) = prepare(env, [{"module": "t2ia_style_clipvision", "model": "t2iadapter_style_sd14v1",
                          "image": b64png(image), "weight": 0.7}])
    unit = p.bound
    assert isinstance(unit, StyleUnit) and unit.hint.shape == (1, 257, 64)
    pixels = torch.from_numpy(cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA)).float().div(255)
    pixels = (pixels.permute(2, 0, 1)[None] - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        tokens_in = clip_vitl(pixel_values=pixels).last_hidden_state
    assert torch.allclose(unit.hint, tokens_in, rtol=1e-5, atol=1e-5)
    expected = style_oracle(style_state_dict(seed=15), tokens_in) * 0.7

    from tests.tiny_models import SD_LIKE_UNET as CFG

    unet = ldm_unet(dict(CFG, context_dim=768), seed=3)
    g = torch.Generator().manual_seed(6)
    x, t = torch.randn(2, 4, 16, 16, generator=g), torch.tensor([600.0, 600.0])
    ctx = torch.randn(2, 5, 768, generator=g)
    with torch.no_grad(), ControlHook(unet, [unit], lambda *a: CallInfo(cond_rows=(0,)), family="sd1").applied():
        out = unet(x, t, ctx)
    with torch.no_grad():
        reference = unet(x, t, torch.cat([ctx, torch.cat([expected, torch.zeros_like(expected)])], dim=1))
    assert torch.allclose(out, reference, rtol=1e-4, atol=1e-5 * reference.abs().max().item())


def test_panel_filters_and_lists_the_new_kinds_by_their_shapes(env):
    registry, _, folder, _ = env
    assert model_family(folder / "t2i-adapter-canny-xl") == "sdxl"  # from the header, not the name
    assert model_family(folder / "control-lora-canny-rank4.safetensors") == "sd1"
    sd1 = models_for_family(registry, "sd1", refresh=True)
    assert [n.split(" [")[0] for n in sd1] == sorted(
        ["control-lora-canny-rank4", "t2iadapter_depth_sd14v1", "t2iadapter_style_sd14v1"])
    assert [n.split(" [")[0] for n in models_for_family(registry, "sdxl")] == ["t2i-adapter-canny-xl"]
    choices = type_choices("T2I-Adapter", default_registry(), sd1)
    assert [n.split(" [")[0] for n in choices.models[1:]] == ["t2iadapter_depth_sd14v1", "t2iadapter_style_sd14v1"]
    canny = type_choices("Canny", default_registry(), sd1)
    assert any(n.startswith("control-lora-canny-rank4") for n in canny.models)


def test_the_checkpoint_family_is_checked_before_anything_runs(env):
    """With the checkpoint's family known (both hosts pass it), a file of another family fails in
    prepare_units, and in the X/Y/Z pre-check, naming unit and field, before its image is even read."""
    from lib_controlnet.generation import check_unit_setup

    registry, unet, _, image = env
    payload = [{"module": "canny", "model": "t2iadapter_depth_sd14v1", "image": b64png(image)},
               {"module": "canny", "model": "t2i-adapter-canny-xl", "image": "not an image"}]
    with pytest.raises(IncompatibleModelError, match="made for sdxl but the checkpoint is sd1") as e:
        prepare(env, payload, family="sd1")
    assert (e.value.unit, e.value.field) == (1, "model")
    unit = Unit.from_dict(payload[1])
    with pytest.raises(IncompatibleModelError):
        check_unit_setup(unit, models=registry, preprocessors=default_registry(), family="sd1")
    check_unit_setup(unit, models=registry, preprocessors=default_registry(), family="sdxl")
