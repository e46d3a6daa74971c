"""InstantID through `prepare_units` and the hook on ldm's UNetModel: the InstantID ControlNet (named so, as the
reference detects it: its keys are a plain ControlNet's) reads the face tokens of the InstantID IP-Adapter unit
before it as its cross-attention context — the cond tokens in cond rows, the uncond (zero face) tokens in
uncond rows — while the UNet keeps reading the prompt; the same ControlNet under another name reads the prompt;
an InstantID ControlNet with no IP-Adapter unit right before it is refused naming the model."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch

from lib_controlnet import CallInfo, ControlHook, InputError, ModelCache
from lib_controlnet.generation import GenerationInputs, prepare_units
from lib_controlnet.models.registry import ModelRegistry
from lib_controlnet.preprocessors import ResultCache, default_registry
from lib_controlnet.units.unit import Unit
from tests.ip_adapter_models import FACE, ip_adapter_state_dict, save, unet_widths
from tests.test_generation_kinds import b64png
from tests.tiny_models import SD_LIKE_UNET, controlnet_state_dict_from_unet, ldm_unet, save_state_dict

CROSS = SD_LIKE_UNET["context_dim"]
INSTANT_IP, INSTANT_CN, PLAIN_CN = "ip-adapter_instant_id_sd15", "control_instant_id_sd15", "control_canny_sd15"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ControlNet")
    unet = ldm_unet(SD_LIKE_UNET, seed=21)
    save(ip_adapter_state_dict("instant_id", cross=CROSS, inner=unet_widths(unet), tokens=16, seed=22),
         folder / f"{INSTANT_IP}.safetensors")
    cn = controlnet_state_dict_from_unet(unet, seed=23)
    for name in (INSTANT_CN, PLAIN_CN):
        save_state_dict(cn, folder / f"{name}.safetensors")
    return ModelRegistry([folder]), unet


def face_blob(seed=0) -> tuple[torch.Tensor, str]:
    face = torch.randn(FACE, generator=torch.Generator().manual_seed(seed))  # instant_id_face_embedding's shape
    buffer = io.BytesIO()
    torch.save(face, buffer)
    return face, base64.b64encode(buffer.getvalue()).decode()


def keypoint_map() -> str:
    image = np.zeros((64, 64, 3), np.uint8)
    for (x, y), colour in zip([(20, 24), (44, 24), (32, 34), (22, 46), (42, 46)], [(255, 0, 0), (0, 255, 0),
                                                                               (0, 0, 255), (255, 255, 0),
                                                                               (255, 0, 255)]):
        image[y - 3:y + 3, x - 3:x + 3] = colour
    return b64png(image)


def prepare(env, units):
    registry, unet = env
    inputs = GenerationInputs(width=64, height=64, base_unet=unet.state_dict(keep_vars=True), base_id="ckpt")
    return prepare_units([Unit.from_dict(u, index=i) for i, u in enumerate(units)], inputs, models=registry,
                         model_cache=ModelCache(), preprocessors=default_registry(), result_cache=ResultCache())


def units(cn_model: str = INSTANT_CN):
    _, blob = face_blob()
    return [{"enabled": True, "module": "instant_id_face_embedding", "model": INSTANT_IP, "ipadapter_input": [blob]},
            {"enabled": True, "module": "none", "model": cn_model, "image": keypoint_map()}]


def contexts_seen(unet, prepared):
    """The context each network's first cross-attention got: (UNet's, ControlNet's), over one 2-row call."""
    controlnet = prepared[1].effects[0].model.net
    seen = {}

    def keep(name):
        def hook(module, args):
            seen.setdefault(name, args[0].detach().clone())
        return hook

    first = {name: next(m.attn2 for m in net.modules() if hasattr(m, "attn2"))
             for name, net in (("unet", unet), ("controlnet", controlnet))}
    handles = [first[name].to_k.register_forward_pre_hook(keep(name)) for name in first]
    g = torch.Generator().manual_seed(1)
    x, ctx = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 5, CROSS, generator=g)
    effects = [e for pu in prepared for e in pu.effects]
    try:
        with torch.no_grad(), ControlHook(unet, effects, lambda *a: CallInfo(cond_rows=(0,)), family="sd1").applied():
            unet(x, torch.tensor([500.0, 500.0]), ctx)
    finally:
        for h in handles:
            h.remove()
    return ctx, seen["unet"], seen["controlnet"]


def test_the_instant_id_controlnet_reads_the_face_tokens_cond_and_uncond(env):
    registry, unet = env
    prepared = prepare(env, units())
    ip, cn = prepared[0].effects[0], prepared[1].effects[0]
    face, _ = face_blob()
    cond, uncond = ip.model.tokens({"face_embed": face.reshape(1, FACE)})  # the InstantID resampler's tokens
    assert cond.shape == (1, 16, CROSS) and not torch.allclose(cond, uncond)
    assert torch.equal(ip.cond, cond) and torch.equal(ip.uncond, uncond)
    ctx, unet_saw, cn_saw = contexts_seen(unet, prepared)
    assert torch.equal(unet_saw, ctx)  # the UNet keeps the prompt
    assert cn_saw.shape == (2, 16, CROSS)
    assert torch.allclose(cn_saw[0], cond[0]) and torch.allclose(cn_saw[1], uncond[0])
    assert cn.context_override is not None


def test_the_same_controlnet_under_another_name_reads_the_prompt(env):
    registry, unet = env
    prepared = prepare(env, units(PLAIN_CN))
    assert prepared[1].effects[0].context_override is None
    ctx, _, cn_saw = contexts_seen(unet, prepared)
    assert torch.equal(cn_saw, ctx)


def test_an_instant_id_controlnet_must_follow_its_ip_adapter(env):
    ip, cn = units()
    for order in ([cn], [cn, ip], [{**ip, "enabled": False}, cn]):
        with pytest.raises(InputError) as info:
            prepare(env, order)
        assert info.value.field == "model" and "must follow an IP-Adapter unit" in str(info.value)
        assert info.value.unit == [u is cn for u in order].index(True)
