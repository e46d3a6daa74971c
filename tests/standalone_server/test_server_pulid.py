"""PuLID through the standalone host's real socket with `--demo sdxl` (PuLID is SDXL only): a random-weight
ip-adapter_pulid_sdxl_fp16.safetensors for the demo UNet's 70 cross-attentions, and the preprocessor's files in
the annotator folder (tests/pulid_models.py, tests/face_models.py): antelopev2 ONNX stand-ins, a RetinaFace with
designed heads, a random BiSeNet and a tiny EVA02-CLIP tower in the published file's structure.

- a PuLID unit generates and changes the image, appends no map, leaves the UNet's weights and modules as they
  were; its two modes give two images, and the infotext says the one that is not the default;
- ip-adapter-auto picks ip-adapter_pulid by the published file name;
- /controlnet/detect gives the dict of tensors (weights_only), which comes back as `ipadapter_input`;
- a missing file is a 404 naming it, its folder and source; without onnxruntime a 501.
"""

from __future__ import annotations

import base64
import io
import sys

import httpx
import numpy as np
import pytest
import torch

from annotator.neural import eva_clip as ev
from annotator.neural import face_analysis as fa
from annotator.neural.onnx_models import ONNXRUNTIME
from standalone.server import ServerConfig
from tests.face_models import ArcFaceWeights, Face, arcface, designed_scrfd_outputs, scrfd
from tests.ip_adapter_models import save, unet_widths
from tests.pulid_models import designed_retinaface_state, eva_clip_file_state, pulid_state_dict, random_bisenet_state
from tests.standalone_server.conftest import own_app, serving, with_sdxl_demo
from tests.standalone_server.server_helpers import body, decode, ok, pixels, png_b64

pytest.importorskip("onnxruntime")

PULID = "ip-adapter_pulid_sdxl_fp16"
T = fa.ARCFACE_TEMPLATE
FACE = Face((256, 112, 384, 288), 0.9, 4 * T + (80, 32), stride=32, cell=(10, 6), anchor=1)


def photo(seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).random((96, 96, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory, one_torch_thread, sdxl_demo_files):
    models_dir = with_sdxl_demo(sdxl_demo_files, tmp_path_factory.mktemp("pulid-server-models"))
    with own_app(ServerConfig(models_dir=models_dir, demo="sdxl")) as app:
        service = app.state.service
        unet = service.checkpoint.model.unet
        cross = unet.input_blocks[4][1].transformer_blocks[0].attn2.to_k.in_features
        folder = service.checkpoint.controlnet_dirs[0]
        folder.mkdir(parents=True, exist_ok=True)
        save(pulid_state_dict(inner=unet_widths(unet), context=cross, seed=71), folder / f"{PULID}.safetensors")
        annotators = models_dir / "annotators"
        pack = annotators / "insightface" / "models" / "antelopev2"
        pack.mkdir(parents=True)
        (pack / "scrfd_10g_bnkps.onnx").write_bytes(scrfd(designed_scrfd_outputs([FACE])))
        (pack / "glintr100.onnx").write_bytes(arcface(ArcFaceWeights.random(seed=72)))
        (annotators / "facexlib").mkdir()
        torch.save(designed_retinaface_state(), annotators / "facexlib" / "detection_Resnet50_Final.pth")
        torch.save(random_bisenet_state(seed=73), annotators / "facexlib" / "parsing_bisenet.pth")
        (annotators / "clip_vision").mkdir()
        torch.save(eva_clip_file_state(seed=74), annotators / "clip_vision" / ev.EVA_CLIP_FILE)

        with serving(app) as url, httpx.Client(base_url=url, timeout=300) as client:
            yield client, unet, annotators


def pulid_unit(module: str = "ip-adapter_pulid", image=None, **fields) -> dict:
    return {"enabled": True, "module": module, "model": PULID, "image": png_b64(photo()) if image is None else image,
            **fields}


def generate(client, *units) -> dict:
    return ok(client.post("/sdapi/v1/txt2img", json=body(*units)))


def test_a_pulid_unit_changes_the_image_and_its_modes_differ(sdxl):
    client, unet, _ = sdxl
    weights_before = {k: v.clone() for k, v in unet.state_dict().items()}
    plain = pixels(generate(client)["images"][0])
    data = generate(client, pulid_unit())
    fidelity = pixels(data["images"][0])
    assert len(data["images"]) == 1  # an embedding unit appends no map
    text = decode(data["images"][0]).info["parameters"]
    assert "Module: ip-adapter_pulid" in text and f"Model: {PULID}" in text and "Pulid Mode" not in text
    styled = generate(client, pulid_unit(pulid_mode="Extremely style"))
    style = pixels(styled["images"][0])
    assert "Pulid Mode: Extremely style" in decode(styled["images"][0]).info["parameters"]
    assert not np.array_equal(fidelity, plain) and not np.array_equal(style, plain)
    assert not np.array_equal(fidelity, style)
    assert np.array_equal(pixels(generate(client, pulid_unit(weight=0))["images"][0]), plain)
    assert all(torch.equal(v, weights_before[k]) for k, v in unet.state_dict().items())
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in unet.modules()) == 0


def test_ip_adapter_auto_picks_pulid_by_the_file_name(sdxl):
    client, _, _ = sdxl
    auto = pixels(generate(client, pulid_unit("ip-adapter-auto"))["images"][0])
    assert np.array_equal(auto, pixels(generate(client, pulid_unit())["images"][0]))


def test_detect_gives_the_dict_of_tensors_which_comes_back_as_ipadapter_input(sdxl):
    client, _, _ = sdxl
    image = png_b64(photo())
    result = ok(client.post("/controlnet/detect", json={"controlnet_module": "ip-adapter_pulid",
                                                        "controlnet_input_images": [image]}))
    assert "images" not in result and len(result["tensor"]) == 1
    blob = result["tensor"][0]
    found = torch.load(io.BytesIO(base64.b64decode(blob)), weights_only=True)
    assert {k: tuple(v.shape) for k, v in found.items()} == {
        "id_ante_embedding": (1, 512), "id_cond_vit": (1, 32), "id_vit_hidden": (5, 1, 10, 64)}
    assert abs(float(found["id_cond_vit"].norm()) - 1) < 1e-5
    sent = {"enabled": True, "module": "ip-adapter_pulid", "model": PULID, "ipadapter_input": [blob]}
    assert np.array_equal(pixels(generate(client, sent)["images"][0]),
                          pixels(generate(client, pulid_unit(image=image))["images"][0]))


def test_a_missing_file_is_a_404_naming_it_and_no_onnxruntime_a_501(sdxl, monkeypatch):
    client, _, annotators = sdxl
    path = annotators / "clip_vision" / ev.EVA_CLIP_FILE
    moved = path.with_suffix(".away")
    path.rename(moved)
    try:
        response = client.post("/sdapi/v1/txt2img", json=body(pulid_unit(image=png_b64(photo(5)))))
    finally:
        moved.rename(path)
    assert response.status_code == 404
    assert ev.EVA_CLIP_FILE in response.text and str(annotators) in response.text and "unit 0" in response.text
    assert "huggingface.co/QuanSun/EVA-CLIP" in response.text
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    detect = {"controlnet_module": "ip-adapter_pulid", "controlnet_input_images": [png_b64(photo(3))]}
    response = client.post("/controlnet/detect", json=detect)
    assert response.status_code == 501 and f"pip install {ONNXRUNTIME}" in response.text
