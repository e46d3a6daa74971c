"""T2I-Adapter and Control-LoRA units through the standalone host's real socket: listed, generate, change the
image, write infotext, and leave the demo UNet as it was (weights and hooks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tests.standalone_server.server_helpers import body, decode, ok, pixels, unit
from tests.tiny_kinds import control_lora_state_dict, diffusers_t2i, save_t2i_original
from tests.tiny_models import controlnet_state_dict_from_unet

T2I = "t2iadapter_demo_sd14v1"
LORA = "control-lora-demo-rank4"


@pytest.fixture(scope="module")
def kinds(service):
    """Both files in the checkpoint's ControlNet folder for this module only (other tests count the models)."""
    folder = service.checkpoint.controlnet_dirs[0]
    folder.mkdir(parents=True, exist_ok=True)
    unet = service.checkpoint.model.unet
    paths = [save_t2i_original(diffusers_t2i(channels=(32, 64, 128, 128), seed=21), folder / f"{T2I}.safetensors"),
             folder / f"{LORA}.safetensors"]
    save_file(control_lora_state_dict(controlnet_state_dict_from_unet(unet, seed=22), rank=4, seed=23), str(paths[1]))
    yield unet
    for p in paths:
        p.unlink()
    service.model_cache.clear()


def test_listed_and_generating_with_both_kinds(client, kinds):
    unet = kinds
    names = [n.split(" [")[0] for n in client.get("/controlnet/model_list").json()["model_list"]]
    assert T2I in names and LORA in names
    weights = {k: v.clone() for k, v in unet.state_dict().items()}
    plain = pixels(ok(client.post("/sdapi/v1/txt2img", json=body()))["images"][0])
    images = {}
    for model, mode in ((T2I, "Balanced"), (LORA, "My prompt is more important")):
        data = ok(client.post("/sdapi/v1/txt2img", json=body(unit(model=model, control_mode=mode))))
        generated = decode(data["images"][0])
        images[model] = np.asarray(generated.convert("RGB"))
        assert not np.array_equal(images[model], plain)
        assert f'Model: {model} [' in generated.info["parameters"]
        assert f"Control Mode: {mode}" in generated.info["parameters"]
    both = ok(client.post("/sdapi/v1/txt2img", json=body(unit(model=T2I), unit(model=LORA))))
    assert not np.array_equal(pixels(both["images"][0]), images[T2I])
    assert all(torch.equal(v, weights[k]) for k, v in unet.state_dict().items())
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in unet.modules()) == 0
