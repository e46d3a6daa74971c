"""T2I-Adapter and Control-LoRA units in a real A1111 WebUI (tools/a1111_rig.sh makes both files: random weights
in TencentARC's and Stability's published layouts). Each generates, changes the image, records its model in
the infotext, and leaves the UNet as it was: the image without units is reproduced exactly afterwards.

Skipped unless `A1111_URL` names a running WebUI (see test_api_a1111.py); under `A1111_REQUIRE=1` the missing
files are failures.
"""

from __future__ import annotations

import os

import pytest

if not os.environ.get("A1111_URL"):
    pytest.skip("A1111_URL is not set (no A1111 WebUI to test against)", allow_module_level=True)

from tests.a1111.test_api_a1111 import (  # noqa: E402
    IMAGE_B64,
    get,
    ok_json,
    post,
    same,
    txt2img_payload,
    unit,
)

KINDS = {"t2i_adapter": "t2iadapter_depth_sd14v1", "control_lora": "control-lora-canny-rank128"}


def generate(payload):
    import base64
    import io
    import json

    import numpy as np
    from PIL import Image

    body = ok_json(post("/sdapi/v1/txt2img", payload))
    info = json.loads(body["info"]) if isinstance(body.get("info"), str) else body.get("info") or {}
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["images"][0]))).convert("RGB"))
    return image, info


@pytest.fixture(scope="module")
def names() -> dict[str, str]:
    listed = ok_json(get("/controlnet/model_list"))["model_list"]
    found = {}
    for kind, stem in KINDS.items():
        match = [n for n in listed if n.split(" [")[0] == stem]
        if not match:
            pytest.skip(f"{stem} is not in /controlnet/model_list (made by tools/a1111_rig.sh): {listed}")
        found[kind] = match[0]
    return found


@pytest.fixture(scope="module")
def plain(names):
    return generate(txt2img_payload(steps=2))[0]


@pytest.mark.parametrize("kind, module, mode", [
    ("t2i_adapter", "none", "Balanced"),
    ("t2i_adapter", "none", "ControlNet is more important"),
    ("control_lora", "canny", "Balanced"),
    ("control_lora", "canny", "My prompt is more important"),
])
def test_a_unit_of_each_kind_generates_and_changes_the_image(names, plain, kind, module, mode):
    payload = txt2img_payload([unit(names[kind], module=module, image=IMAGE_B64, control_mode=mode)], steps=2)
    image, info = generate(payload)
    assert not same(image, plain), f"a {kind} unit changed nothing"
    infotext = info.get("infotexts", [""])[0] or str(info)
    assert f"Model: {names[kind]}" in infotext and f"Control Mode: {mode}" in infotext


def test_both_kinds_together_then_the_unet_is_as_it_was(names, plain):
    units = [unit(names["t2i_adapter"], module="none"), unit(names["control_lora"], weight=0.7)]
    image, _ = generate(txt2img_payload(units, steps=2))
    assert not same(image, plain)
    again, _ = generate(txt2img_payload(steps=2))
    assert same(again, plain), "the image without units changed after T2I-Adapter / Control-LoRA units"
