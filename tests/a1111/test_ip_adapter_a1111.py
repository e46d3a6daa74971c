"""IP-Adapter units in a real A1111 WebUI (issue 14), with the rig's random-weight files named and laid out like
h94's (ip-adapter-plus_sd15 and ip-adapter-plus-face_sd15 .safetensors, and the ViT-H/14 image encoder the
ip-adapter_clip_h preprocessor reads, as annotators/clip_vision/clip_h.safetensors; see
tools/a1111_rig_models.py): a plus unit and a plus-face unit each generate and change the image, two
IP-Adapter units and a ControlNet unit run together, ip-adapter-auto picks the encoder by file name, and the
ip-adapter modules on /controlnet/detect answer in the reference's non-image shape ({"info", "tensor": [base64
of torch.save]}) with embeddings that come back as `ipadapter_input`. The model is left exactly as it was
(tests/a1111/probe.py), and the plain image is reproduced afterwards.

Skipped unless `A1111_URL` names a running WebUI (see test_api_a1111.py); under `A1111_REQUIRE=1` (the rig)
a missing file or probe is a failure.
"""

from __future__ import annotations

import os

import pytest

if not os.environ.get("A1111_URL"):
    pytest.skip("A1111_URL is not set (no A1111 WebUI to test against)", allow_module_level=True)

import base64  # noqa: E402
import io  # noqa: E402

import numpy as np  # noqa: E402

from tests.a1111.probe import assert_as_before, model_state  # noqa: E402
from tests.a1111.test_api_a1111 import (  # noqa: E402
    generate,
    get,
    model_name,  # noqa: F401  (fixture: the canny ControlNet)
    ok_json,
    post,
    same,
    to_b64,
    txt2img_payload,
    unit,
)

STEPS = 2
PLUS, PLUS_FACE = "ip-adapter-plus_sd15", "ip-adapter-plus-face_sd15"
CLIP_H_MODULES = ("ip-adapter_clip_h", "ip-adapter_clip_sd15", "ip-adapter_clip_sdxl_plus_vith")  # label, names


def face(seed: int, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((size, size, 3)) * 255).astype(np.uint8)


FACE_1, FACE_2 = to_b64(face(1)), to_b64(face(2))


def txt2img(units=None):
    images, info = generate("txt2img", txt2img_payload(units, steps=STEPS))
    return images, info.get("infotexts", [""])[0] or str(info)


def ip_unit(model: str, image: str = FACE_1, **fields) -> dict:
    """An IP-Adapter unit: no control mode, threshold or resolution applies (the sliders are hidden)."""
    return unit(model, **{"module": "ip-adapter_clip_h", "image": image, "processor_res": None, "threshold_a": None,
                          "threshold_b": None, "control_mode": None, **fields})


@pytest.fixture(scope="module")
def names() -> dict[str, str]:
    listed = ok_json(get("/controlnet/model_list"))["model_list"]
    found = {}
    for stem in (PLUS, PLUS_FACE):
        match = [n for n in listed if n.split(" [")[0] == stem]
        if not match:
            pytest.skip(f"{stem} is not in /controlnet/model_list (made by tools/a1111_rig.sh): {listed}")
        found[stem] = match[0]
    return found


@pytest.fixture(scope="module")
def plain(names) -> dict:
    image = txt2img()[0][0]
    return {"image": image, "state": model_state()}


def assert_left_as_before(plain: dict, what: str) -> None:
    assert_as_before(plain["state"], what)
    assert same(txt2img()[0][0], plain["image"]), f"the plain image changed after {what}"


def decode_tensors(blob: str) -> dict:
    import torch

    return torch.load(io.BytesIO(base64.b64decode(blob)), weights_only=True)  # data only: nothing to unpickle


def test_plus_and_plus_face_units_generate_and_change_the_image(names, plain):
    images = {}
    for stem in (PLUS, PLUS_FACE):
        out, infotext = txt2img([ip_unit(names[stem])])
        assert len(out) == 1, f"an embedding unit has no detected map to append, got {len(out)} images"
        assert not same(out[0], plain["image"]), f"a {stem} unit changed nothing"
        assert f"Model: {names[stem]}" in infotext and "Module: ip-adapter_clip_h" in infotext, infotext
        images[stem] = out[0]
    assert not same(images[PLUS], images[PLUS_FACE]), "the plus and plus-face files gave the same image"
    assert_left_as_before(plain, "IP-Adapter plus and plus-face units")


def test_two_ip_adapter_units_and_a_controlnet_unit_together(names, plain, model_name):  # noqa: F811
    cn = unit(model_name)
    alone, _ = txt2img([cn])
    one, _ = txt2img([ip_unit(names[PLUS]), cn])
    both, infotext = txt2img([ip_unit(names[PLUS]), ip_unit(names[PLUS_FACE], image=FACE_2, weight=0.7), cn])
    assert len(both) == 2, f"expected the image and the ControlNet unit's canny map, got {len(both)} images"
    assert same(both[1], alone[1]), "the ControlNet unit's map depends on the IP-Adapter units"
    assert not same(both[0], alone[0]) and not same(both[0], one[0])
    assert "ControlNet 0" in infotext and "ControlNet 1" in infotext and "ControlNet 2" in infotext, infotext
    assert_left_as_before(plain, "two IP-Adapter units and a ControlNet unit")


def test_ip_adapter_auto_picks_clip_h_for_plus_face(names, plain):
    auto, _ = txt2img([ip_unit(names[PLUS_FACE], module="ip-adapter-auto")])
    direct, _ = txt2img([ip_unit(names[PLUS_FACE])])
    assert same(auto[0], direct[0]) and not same(auto[0], plain["image"])


def test_detect_gives_the_clip_h_embeddings_in_the_references_shape(names, plain):
    blobs = {}
    for module in CLIP_H_MODULES:
        body = ok_json(post("/controlnet/detect", {"controlnet_module": module, "controlnet_input_images": [FACE_1]}))
        assert body.get("info") == "Success" and "images" not in body, {k: str(v)[:80] for k, v in body.items()}
        assert isinstance(body.get("tensor"), list) and len(body["tensor"]) == 1, list(body)
        blobs[module] = body["tensor"][0]
    tensors = decode_tensors(blobs["ip-adapter_clip_h"])
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    assert shapes == {"image_embeds": (1, 1024), "last_hidden_state": (1, 257, 1280),
                      "penultimate_hidden_state": (1, 257, 1280),
                      "uncond_penultimate_hidden_state": (1, 257, 1280)}, shapes
    import torch

    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in tensors.values())
    assert not torch.equal(tensors["penultimate_hidden_state"], tensors["uncond_penultimate_hidden_state"])
    for module in CLIP_H_MODULES[1:]:  # the same encoder under its name and the SDXL plus name
        other = decode_tensors(blobs[module])
        assert all(torch.equal(other[k], tensors[k]) for k in tensors), module
    # what detect gave, sent back as ipadapter_input, is what the unit computes from the image
    from_image, _ = txt2img([ip_unit(names[PLUS])])
    blob = blobs["ip-adapter_clip_h"]
    sent = {"enabled": True, "module": "ip-adapter_clip_h", "model": names[PLUS], "ipadapter_input": [blob]}
    from_blob, _ = txt2img([sent])
    assert same(from_blob[0], from_image[0])


def test_detect_refuses_ip_adapter_auto_and_names_a_missing_encoder():
    def detect(module):
        return post("/controlnet/detect", {"controlnet_module": module, "controlnet_input_images": [FACE_1]})

    auto = detect("ip-adapter-auto")
    assert auto.status_code == 422 and "Module not supported" in auto.text, auto.text[:500]
    # the rig has no ViT-bigG file: the answer names the file, where it is looked for and where it is published
    missing = detect("ip-adapter_clip_g")
    assert missing.status_code == 404, missing.text[:500]
    assert "clip_g.pth" in missing.text and "clip_vision" in missing.text and "huggingface.co" in missing.text, \
        missing.text[:500]
