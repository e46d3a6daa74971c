"""FaceID and InstantID through the standalone host's real socket, with random-weight IP-Adapter files named like
the published ones, the demo ControlNet's weights as the InstantID ControlNet, and ONNX stand-ins of
insightface's buffalo_l / antelopev2 files (tests/face_models.py: one designed face wherever the image):

- a FaceID unit and a FaceID plus v2 unit generate and change the image; the LoRA FaceID files are published
  with is named in the response's warnings (this host has none); v2 (by name) adds the face tokens back;
- the InstantID pair (instant_id_face_embedding with the InstantID IP-Adapter, then instant_id_face_keypoints
  with the InstantID ControlNet) generates, appends the keypoint map, and the ControlNet reads the face tokens:
  the same ControlNet under a plain name (reading the prompt) gives another image; alone it is a 422;
- /controlnet/detect gives the reference's tensors, which come back as `ipadapter_input`;
- a missing file is a 404 naming it, its folder and source; without onnxruntime a 501 with the install command.
"""

from __future__ import annotations

import base64
import io
import shutil
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from annotator.neural import face_analysis as fa
from annotator.neural.onnx_models import ONNXRUNTIME
from tests.face_models import ArcFaceWeights, Face, arcface, designed_scrfd_outputs, scrfd
from tests.ip_adapter_models import ip_adapter_state_dict, save, unet_widths
from tests.standalone_server.server_helpers import body, decode, ok, pixels, png_b64, unit

pytest.importorskip("onnxruntime")

FACEID, PLUS_V2, PLUS = "ip-adapter-faceid_sd15", "ip-adapter-faceid-plusv2_sd15", "ip-adapter-faceid-plus_sd15"
INSTANT_IP, INSTANT_CN, PLAIN_CN = "ip-adapter_instant_id_sd15", "control_instant_id_sd15", "control_copy_sd15"
CLIP = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=16, patch_size=14,
            image_size=224, projection_dim=24, layer_norm_eps=1e-5, hidden_act="gelu")
T = fa.ARCFACE_TEMPLATE
FACE = Face((256, 112, 384, 288), 0.9, 4 * T + (80, 32), stride=32, cell=(10, 6), anchor=1)


def photo(seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).random((96, 96, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def face_files(service, models_dir):
    folder = service.checkpoint.controlnet_dirs[0]
    folder.mkdir(parents=True, exist_ok=True)
    unet = service.checkpoint.model.unet
    cross = unet.input_blocks[1][1].transformer_blocks[0].attn2.to_k.in_features
    widths = unet_widths(unet)
    plus = ip_adapter_state_dict("faceid_plus", cross=cross, inner=widths, clip=32, seed=42)
    paths = [save(ip_adapter_state_dict("faceid", cross=cross, inner=widths, seed=41), folder / f"{FACEID}.bin"),
             save(plus, folder / f"{PLUS_V2}.safetensors"), save(plus, folder / f"{PLUS}.safetensors"),
             save(ip_adapter_state_dict("instant_id", cross=cross, inner=widths, tokens=16, seed=43),
                  folder / f"{INSTANT_IP}.safetensors")]
    demo_cn = next(service.checkpoint.controlnet_dirs[1].glob("*.safetensors"))
    for name in (INSTANT_CN, PLAIN_CN):
        paths.append(folder / f"{name}.safetensors")
        shutil.copy(demo_cn, paths[-1])
    annotators = models_dir / "annotators"
    det = scrfd(designed_scrfd_outputs([FACE]))
    for pack, files in (("buffalo_l", {"det_10g.onnx": det, "w600k_r50.onnx": arcface(ArcFaceWeights.random(1))}),
                        ("antelopev2", {"scrfd_10g_bnkps.onnx": det,
                                        "glintr100.onnx": arcface(ArcFaceWeights.random(2))})):
        pack_folder = annotators / "insightface" / "models" / pack
        pack_folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            paths.append(pack_folder / name)
            paths[-1].write_bytes(data)
    torch.manual_seed(44)
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP))
    paths.append(annotators / "clip_vision" / "clip_h.safetensors")
    paths[-1].parent.mkdir(parents=True, exist_ok=True)
    save_file(encoder.state_dict(), str(paths[-1]))
    yield unet
    for p in paths:
        p.unlink()
    service.model_cache.clear()


def face_unit(model: str, module: str, image=None, **fields) -> dict:
    return unit(model=model, module=module, image=png_b64(photo()) if image is None else image, **fields)


@pytest.fixture(scope="module")
def plain(client, face_files):
    return pixels(ok(client.post("/sdapi/v1/txt2img", json=body()))["images"][0])


def generate(client, *units) -> dict:
    return ok(client.post("/sdapi/v1/txt2img", json=body(*units)))


def test_face_id_units_change_the_image_and_name_their_lora(client, face_files, plain):
    unet = face_files
    weights = {k: v.clone() for k, v in unet.state_dict().items()}
    images = {}
    for model, module in ((FACEID, "ip-adapter_face_id"), (PLUS_V2, "ip-adapter_face_id_plus")):
        data = generate(client, face_unit(model, module))
        generated = decode(data["images"][0])
        images[model] = np.asarray(generated.convert("RGB"))
        assert not np.array_equal(images[model], plain)
        assert len(data["images"]) == 1  # an embedding unit appends no map
        assert f"Module: {module}" in generated.info["parameters"]
        lora = f"{model}_lora"
        assert any("unit 0" in w and lora in w and "no LoRA of that name" in w for w in data["warnings"]), data
    assert not np.array_equal(images[FACEID], images[PLUS_V2])
    assert all(torch.equal(v, weights[k]) for k, v in unet.state_dict().items())
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in unet.modules()) == 0


def test_face_id_plus_v2_by_name_adds_the_face_tokens_back(client, face_files):
    v2 = pixels(generate(client, face_unit(PLUS_V2, "ip-adapter_face_id_plus"))["images"][0])
    v1 = pixels(generate(client, face_unit(PLUS, "ip-adapter_face_id_plus"))["images"][0])  # the same tensors
    assert not np.array_equal(v1, v2)


def test_ip_adapter_auto_picks_the_face_module_by_file_name(client, face_files):
    auto = pixels(generate(client, face_unit(FACEID, "ip-adapter-auto"))["images"][0])
    direct = pixels(generate(client, face_unit(FACEID, "ip-adapter_face_id"))["images"][0])
    assert np.array_equal(auto, direct)


def test_a_face_module_with_a_clip_ip_adapter_is_a_422_naming_the_module(client, face_files):
    response = client.post("/sdapi/v1/txt2img", json=body(face_unit(PLUS_V2, "ip-adapter_face_id")))
    assert response.status_code == 422 and "unit 0" in response.text and "'module'" in response.text
    assert "ip-adapter_face_id_plus" in response.text


def test_the_instant_id_pair_generates_and_its_controlnet_reads_the_face_tokens(client, face_files, plain):
    ip = face_unit(INSTANT_IP, "instant_id_face_embedding")
    keypoints = face_unit(INSTANT_CN, "instant_id_face_keypoints")
    alone = pixels(generate(client, ip)["images"][0])
    data = generate(client, ip, keypoints)
    image = pixels(data["images"][0])
    assert len(data["images"]) == 2  # the image, then the keypoint map
    shown = pixels(data["images"][1])
    assert shown.shape == (64, 64, 3) and shown.any()
    assert not np.array_equal(image, plain) and not np.array_equal(image, alone)
    copy = pixels(generate(client, ip, face_unit(PLAIN_CN, "instant_id_face_keypoints"))["images"][0])
    assert not np.array_equal(image, copy)  # the same weights reading the prompt instead of the face tokens
    assert "Module: instant_id_face_keypoints" in decode(data["images"][0]).info["parameters"]


def test_an_instant_id_controlnet_without_its_ip_adapter_is_a_422(client, face_files):
    response = client.post("/sdapi/v1/txt2img", json=body(face_unit(INSTANT_CN, "instant_id_face_keypoints")))
    assert response.status_code == 422
    assert "unit 0" in response.text and "'model'" in response.text and "must follow" in response.text


def _tensor(blob: str):
    return torch.load(io.BytesIO(base64.b64decode(blob)), weights_only=True)


def test_detect_gives_the_references_tensors_which_come_back_as_ipadapter_input(client, face_files):
    image = png_b64(photo())
    detect = {"controlnet_input_images": [image]}
    face = _tensor(ok(client.post("/controlnet/detect", json={**detect, "controlnet_module": "ip-adapter_face_id"}))
                   ["tensor"][0])
    assert face.shape == (1, 512) and abs(float(face.norm()) - 1) < 1e-5
    embedding = ok(client.post("/controlnet/detect", json={**detect, "controlnet_module": "instant_id_face_embedding"}))
    assert _tensor(embedding["tensor"][0]).shape == (512,)
    drawn = ok(client.post("/controlnet/detect", json={**detect, "controlnet_module": "instant_id_face_keypoints",
                                                       "controlnet_processor_res": 512}))
    assert pixels(drawn["images"][0]).shape == (512, 512, 3)
    detected = ok(client.post("/controlnet/detect", json={**detect, "controlnet_module": "ip-adapter_face_id"}))
    blob = detected["tensor"][0]
    sent = {"enabled": True, "module": "ip-adapter_face_id", "model": FACEID, "ipadapter_input": [blob]}
    from_blob = pixels(generate(client, sent)["images"][0])
    from_image = pixels(generate(client, face_unit(FACEID, "ip-adapter_face_id"))["images"][0])
    assert np.array_equal(from_blob, from_image)


def test_a_missing_face_file_is_a_404_naming_it_and_no_onnxruntime_a_501(client, face_files, models_dir,
                                                                         monkeypatch):
    path = models_dir / "annotators" / "insightface" / "models" / "antelopev2" / "glintr100.onnx"
    data = path.read_bytes()
    path.unlink()
    try:
        response = client.post("/sdapi/v1/txt2img", json=body(face_unit(INSTANT_IP, "instant_id_face_embedding",
                                                                         image=png_b64(photo(5)))))
    finally:
        path.write_bytes(data)
    assert response.status_code == 404
    assert "glintr100.onnx" in response.text and str(models_dir / "annotators") in response.text
    assert "huggingface.co/DIAMONIK7777/antelopev2" in response.text and "unit 0" in response.text

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    detect = {"controlnet_module": "ip-adapter_face_id", "controlnet_input_images": [png_b64(photo(3))]}
    response = client.post("/controlnet/detect", json=detect)
    assert response.status_code == 501 and f"pip install {ONNXRUNTIME}" in response.text
    response = client.post("/sdapi/v1/txt2img", json=body(face_unit(FACEID, "ip-adapter_face_id", image=png_b64(
        photo(4)))))
    assert response.status_code == 501 and "unit 0" in response.text
    assert client.post("/sdapi/v1/txt2img", json=body(unit())).status_code == 200  # nothing else breaks
