"""IP-Adapter units through the standalone host's real socket, with random-weight files named like the
published ones and a small CLIP ViT-H-layout image encoder: plus and plus-face units generate and change the
image, two IP-Adapter units and a ControlNet unit run together, ip-adapter-auto picks the encoder by file
name, /controlnet/detect gives embeddings that come back as `ipadapter_input`, and bad input is a 422 naming
the unit and field. The demo UNet is left as it was (weights and hooks)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from tests.ip_adapter_models import ip_adapter_state_dict, save, unet_widths
from tests.standalone_server.server_helpers import CONTROLNET, body, decode, gradient, ok, pixels, png_b64, unit

PLUS, PLUS_FACE, BASE = "ip-adapter-plus_sd15", "ip-adapter-plus-face_sd15", "ip-adapter_sd15"
ENCODER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=16, patch_size=14,
               image_size=224, projection_dim=24, layer_norm_eps=1e-5, hidden_act="gelu")


def face(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((96, 96, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def ip_files(service, models_dir):
    folder = service.checkpoint.controlnet_dirs[0]
    folder.mkdir(parents=True, exist_ok=True)
    unet = service.checkpoint.model.unet
    cross = unet.input_blocks[1][1].transformer_blocks[0].attn2.to_k.in_features
    widths = unet_widths(unet)
    paths = [save(ip_adapter_state_dict("plus", cross=cross, inner=widths, clip=32, tokens=16, seed=31),
                  folder / f"{PLUS}.safetensors"),
             save(ip_adapter_state_dict("plus", cross=cross, inner=widths, clip=32, tokens=16, seed=32),
                  folder / f"{PLUS_FACE}.bin"),
             save(ip_adapter_state_dict("base", cross=cross, inner=widths, clip=24, seed=33),
                  folder / f"{BASE}.safetensors")]
    torch.manual_seed(34)
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**ENCODER))
    encoder_path = models_dir / "annotators" / "clip_vision" / "clip_h.safetensors"
    encoder_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(encoder.state_dict(), str(encoder_path))
    yield unet
    for p in (*paths, encoder_path):
        p.unlink()
    service.model_cache.clear()


def ip_unit(model: str, image=None, **fields) -> dict:
    fields = {"module": "ip-adapter_clip_h", **fields}
    return unit(model=model, image=png_b64(face(1)) if image is None else image, **fields)


@pytest.fixture(scope="module")
def plain(client, ip_files):
    return pixels(ok(client.post("/sdapi/v1/txt2img", json=body()))["images"][0])


def test_plus_and_plus_face_units_generate_and_change_the_image(client, ip_files, plain):
    unet = ip_files
    weights = {k: v.clone() for k, v in unet.state_dict().items()}
    images = {}
    for model in (PLUS, PLUS_FACE):
        data = ok(client.post("/sdapi/v1/txt2img", json=body(ip_unit(model))))
        generated = decode(data["images"][0])
        images[model] = np.asarray(generated.convert("RGB"))
        assert not np.array_equal(images[model], plain)
        assert f"Model: {model} [" in generated.info["parameters"]
        assert "Module: ip-adapter_clip_h" in generated.info["parameters"]
        assert len(data["images"]) == 1  # an embedding unit has no detected map to append
    assert not np.array_equal(images[PLUS], images[PLUS_FACE])
    assert all(torch.equal(v, weights[k]) for k, v in unet.state_dict().items())
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in unet.modules()) == 0


def test_two_ip_adapter_units_and_a_controlnet_together(client, ip_files):
    cn = unit(model=CONTROLNET)
    alone = pixels(ok(client.post("/sdapi/v1/txt2img", json=body(cn)))["images"][0])
    one = pixels(ok(client.post("/sdapi/v1/txt2img", json=body(ip_unit(PLUS), cn)))["images"][0])
    both = ok(client.post("/sdapi/v1/txt2img", json=body(ip_unit(PLUS), ip_unit(BASE, png_b64(face(2))), cn)))
    assert len(both["images"]) == 2  # the image, then the canny map of the ControlNet unit
    image = pixels(both["images"][0])
    assert not np.array_equal(image, alone) and not np.array_equal(image, one)


def test_several_images_in_one_unit(client, ip_files):
    single = pixels(ok(client.post("/sdapi/v1/txt2img", json=body(ip_unit(PLUS))))["images"][0])
    several = [{"image": png_b64(face(1))}, {"image": png_b64(gradient(80))}]
    multi = pixels(ok(client.post("/sdapi/v1/txt2img", json=body(ip_unit(PLUS, image=several))))["images"][0])
    assert not np.array_equal(single, multi)


def test_ip_adapter_auto_picks_the_encoder_by_file_name(client, ip_files):
    auto = pixels(ok(client.post("/sdapi/v1/txt2img", json=body(ip_unit(PLUS_FACE, module="ip-adapter-auto"))))
                  ["images"][0])
    direct = pixels(ok(client.post("/sdapi/v1/txt2img", json=body(ip_unit(PLUS_FACE))))["images"][0])
    assert np.array_equal(auto, direct)


def test_ip_adapter_auto_with_an_unknown_file_names_the_field(client, ip_files, service):
    folder = service.checkpoint.controlnet_dirs[0]
    odd = (folder / f"{PLUS}.safetensors").read_bytes()
    (folder / "my-own-adapter.safetensors").write_bytes(odd)
    try:
        response = client.post("/sdapi/v1/txt2img", json=body(ip_unit("my-own-adapter", module="ip-adapter-auto")))
    finally:
        (folder / "my-own-adapter.safetensors").unlink()
    assert response.status_code == 422
    assert "unit 0" in response.text and "'module'" in response.text and "preset" in response.text


def test_detect_embeddings_come_back_as_ipadapter_input(client, ip_files):
    detected = ok(client.post("/controlnet/detect", json={"controlnet_module": "ip-adapter_clip_h",
                                                          "controlnet_input_images": [png_b64(face(1))]}))
    blob = detected["tensor"][0]
    tensors = torch.load(io.BytesIO(base64.b64decode(blob)), weights_only=True)
    assert tensors["penultimate_hidden_state"].shape == (1, 257, 32)
    assert tensors["uncond_penultimate_hidden_state"].shape == (1, 257, 32)
    from_image = pixels(ok(client.post("/sdapi/v1/txt2img", json=body(ip_unit(PLUS))))["images"][0])
    sent = {"enabled": True, "module": "ip-adapter_clip_h", "model": PLUS, "ipadapter_input": [blob]}
    from_blob = pixels(ok(client.post("/sdapi/v1/txt2img", json=body(sent)))["images"][0])
    assert np.array_equal(from_image, from_blob)


class Opaque:  # any class at all: weights_only refuses to build it
    pass


def test_an_ipadapter_input_that_needs_code_is_refused(client, ip_files):
    buffer = io.BytesIO()
    torch.save({"x": Opaque()}, buffer)
    sent = {"enabled": True, "module": "ip-adapter_clip_h", "model": PLUS,
            "ipadapter_input": base64.b64encode(buffer.getvalue()).decode()}
    response = client.post("/sdapi/v1/txt2img", json=body(sent))
    assert response.status_code == 422 and "ipadapter_input[0]" in response.text and "unpickle" in response.text


def test_advanced_weighting_of_another_length_is_a_422_naming_it(client, ip_files):
    response = client.post("/sdapi/v1/txt2img", json=body(ip_unit(PLUS, advanced_weighting=[1.0] * 13)))
    assert response.status_code == 422
    assert "unit 0" in response.text and "advanced_weighting" in response.text and "16" in response.text


def test_per_layer_weights_change_the_image(client, ip_files, plain):
    full = pixels(ok(client.post("/sdapi/v1/txt2img", json=body(ip_unit(PLUS))))["images"][0])
    zero = pixels(ok(client.post("/sdapi/v1/txt2img", json=body(ip_unit(PLUS, advanced_weighting=[0.0] * 16))))
                  ["images"][0])
    middle = [0.0] * 16
    middle[6] = 1.0
    mid = pixels(ok(client.post("/sdapi/v1/txt2img", json=body(ip_unit(PLUS, advanced_weighting=middle))))
                 ["images"][0])
    assert np.array_equal(zero, plain)
    assert not np.array_equal(mid, plain) and not np.array_equal(mid, full)


def test_ip_adapter_modules_are_listed(client):
    types = client.get("/controlnet/control_types").json()["control_types"]
    assert "ip-adapter_clip_h" in types["IP-Adapter"]["module_list"]
    assert "ip-adapter-auto" in types["IP-Adapter"]["module_list"]
    modules = client.get("/controlnet/module_list").json()["module_list"]
    assert {"ip-adapter-auto", "ip-adapter_clip_sd15", "ip-adapter_clip_sdxl"} <= set(modules)


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def test_alternating_two_files_with_cache_size_1_frees_each_and_keeps_rss_flat(client, ip_files, service):
    """Issue 14: 20 generations alternating two IP-Adapter files through a cache of one. Each load evicts the
    other model, which must then be freed (nothing else holds it: no hook, embedding cache or unit keeps it),
    and the process's RSS stays within 5 % of its size after the first rounds (the server runs in-process)."""
    import gc
    import weakref

    folder = service.checkpoint.controlnet_dirs[0]
    paths = [folder / f"{PLUS}.safetensors", folder / f"{PLUS_FACE}.bin"]
    capacity = service.model_cache.capacity
    service.model_cache.set_capacity(1)
    service.model_cache.clear()
    loaded, rss = [], []
    try:
        for i in range(20):
            model = (PLUS, PLUS_FACE)[i % 2]
            ok(client.post("/sdapi/v1/txt2img", json=body(ip_unit(model), seed=i, steps=1)))
            assert len(service.model_cache) == 1 and paths[i % 2] in service.model_cache
            loaded.append(weakref.ref(service.model_cache.get(paths[i % 2])))
            gc.collect()
            assert all(ref() is None for ref in loaded[:-1]), f"generation {i}: an evicted IP-Adapter is alive"
            rss.append(_rss_mib())
    finally:
        service.model_cache.set_capacity(capacity)
    first, last = rss[3], rss[-1]
    print(f"RSS {first:.1f} -> {last:.1f} MiB ({last / first:.4f})")
    assert 0.95 <= last / first <= 1.05, f"RSS {first:.0f} MiB after 4 generations, {last:.0f} MiB after 20"
