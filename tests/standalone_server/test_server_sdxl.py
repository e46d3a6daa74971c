"""`launch.py --demo sdxl` through a real socket: the same HTTP checks as the SD1.x demo, plus what depends on the
family (the ControlNet list, a unit of the other family, the native size, hires fix)."""

from __future__ import annotations

import json
import shutil

import httpx
import numpy as np
import pytest

from standalone import DEMO_NOTICE, ensure_demo_models
from standalone.server import ServerConfig
from standalone.server.notice import NOTICE_HEADER
from standalone.server.payload import translate
from standalone.server.schemas import Txt2ImgBody
from tests.standalone_server.conftest import own_app, serving, with_sdxl_demo
from tests.standalone_server.server_helpers import body, decode, gradient, info, ok, pixels, png_b64, square

SDXL_CONTROLNET = "demo-random-weights-controlnet-sdxl"
SD15_CONTROLNET = "demo-random-weights-controlnet-sd15"


def unit(**fields) -> dict:
    base = {"enabled": True, "module": "canny", "model": SDXL_CONTROLNET, "image": png_b64(square())}
    base.update(fields)
    return base


@pytest.fixture(scope="module")
def sdxl_app(tmp_path_factory, one_torch_thread, sdxl_demo_files):
    models_dir = with_sdxl_demo(sdxl_demo_files, tmp_path_factory.mktemp("sdxl-server-models"))
    # an SD1.x ControlNet in the user's folder: listed by the API, hidden from the SDXL page, refused in a unit
    sd15 = ensure_demo_models(models_dir).controlnet
    (models_dir / "ControlNet").mkdir()
    shutil.copy(sd15, models_dir / "ControlNet" / sd15.name)
    with own_app(ServerConfig(models_dir=models_dir, demo="sdxl")) as app:
        yield app


@pytest.fixture(scope="module")
def client(sdxl_app):
    with serving(sdxl_app) as url, httpx.Client(base_url=url, timeout=300) as c:
        yield c


@pytest.fixture(scope="module")
def plain(client):
    return pixels(ok(client.post("/sdapi/v1/txt2img", json=body()))["images"][0])


def test_the_sdxl_demo_is_served_and_labelled(client, sdxl_app):
    response = client.get("/standalone/info")
    data = ok(response)
    assert "sdxl" in data["checkpoint"] and data["is_demo_model"] is True
    assert response.headers[NOTICE_HEADER] == DEMO_NOTICE
    assert sdxl_app.state.service.checkpoint.model.family == "sdxl"
    generated = client.post("/sdapi/v1/txt2img", json=body())
    assert generated.headers[NOTICE_HEADER] == DEMO_NOTICE
    result = ok(generated)
    assert DEMO_NOTICE in result["warnings"] and info(result)["is_demo_model"] is True
    assert "Demo model: " in decode(result["images"][0]).info["parameters"]
    assert "demo-random-weights-sdxl" in decode(result["images"][0]).info["parameters"]


def test_same_seed_same_image_other_seed_other_image(client, plain):
    again = pixels(ok(client.post("/sdapi/v1/txt2img", json=body()))["images"][0])
    other = pixels(ok(client.post("/sdapi/v1/txt2img", json=body(seed=4321)))["images"][0])
    assert np.array_equal(plain, again) and not np.array_equal(plain, other)


def test_weight_zero_gives_the_same_image_as_no_unit(client, plain):
    data = ok(client.post("/sdapi/v1/txt2img", json=body(unit(weight=0))))
    assert np.array_equal(pixels(data["images"][0]), plain)


def test_each_control_mode_gives_its_own_image(client, plain):
    images = []
    for mode in ("Balanced", "My prompt is more important", "ControlNet is more important"):
        data = ok(client.post("/sdapi/v1/txt2img", json=body(unit(control_mode=mode))))
        assert f"Control Mode: {mode}" in decode(data["images"][0]).info["parameters"]
        assert len(data["images"]) == 2
        images.append(pixels(data["images"][0]))
    arrays = [plain, *images]
    assert all(not np.array_equal(a, b) for i, a in enumerate(arrays) for b in arrays[i + 1:])


def test_three_units_append_three_maps(client):
    units = [unit(), unit(module="invert", image=png_b64(gradient())), unit(module="threshold", weight=0.5)]
    data = ok(client.post("/sdapi/v1/txt2img", json=body(*units)))
    assert len(data["images"]) == 1 + 3
    text = decode(data["images"][0]).info["parameters"]
    assert all(f"ControlNet {i}: " in text for i in range(3)) and f"Model: {SDXL_CONTROLNET}" in text


def test_the_page_lists_the_checkpoint_family_s_controlnets_only(client):
    listed = [name.split(" [")[0] for name in ok(client.get("/controlnet/model_list"))["model_list"]]
    assert SDXL_CONTROLNET in listed and SD15_CONTROLNET in listed  # the API lists every file, as the reference
    page = client.get("/simple").text
    config = json.loads(page.split("const CONFIG = ", 1)[1].split(";\n", 1)[0])
    assert config["family"] == "sdxl" and [name.split(" [")[0] for name in config["models"]] == [SDXL_CONTROLNET]
    assert 'id="width" value="1024"' in page


@pytest.mark.parametrize("payload, status, unit_index, field", [
    (body(unit(), unit(model=SD15_CONTROLNET)), 422, 1, "model"),  # an SD1.x ControlNet on SDXL
    (body(unit(model="no-such-model")), 404, 0, "model"),
    (body(unit(weight="heavy")), 422, 0, "weight"),
    (body(width=100), 422, None, "width"),
    (body(enable_hr=True, hr_upscaler="4x-UltraSharp"), 422, None, "hr_upscaler"),
])
def test_errors_are_4xx_naming_unit_and_field(client, payload, status, unit_index, field):
    response = client.post("/sdapi/v1/txt2img", json=payload)
    assert response.status_code == status, response.text
    data = response.json()
    assert data.get("field") == field and data.get("unit") == unit_index
    if field == "model" and status == 422:
        assert "sd1" in data["detail"] and "the checkpoint is sdxl" in data["detail"]


def test_img2img_and_hires_fix_through_the_api(client):
    data = ok(client.post("/sdapi/v1/img2img", json=body(unit(module="invert"), init_images=[png_b64(gradient())],
                                                          denoising_strength=0.5, steps=2)))
    assert len(data["images"]) == 2 and decode(data["images"][0]).size == (64, 64)
    data = ok(client.post("/sdapi/v1/txt2img", json=body(unit(), steps=2, enable_hr=True, hr_scale=1.5,
                                                         hr_second_pass_steps=1, denoising_strength=0.5)))
    image = decode(data["images"][0])
    assert image.size == (96, 96)
    # the unit's maps: the hires-size one, then the first pass's (the reference's order)
    assert [decode(m).size for m in data["images"][1:]] == [(96, 96), (64, 64)]
    text = image.info["parameters"]
    assert "Hires upscale: 1.5" in text and "Hires steps: 1" in text and "Size: 64x64" in text


def test_width_and_height_default_to_the_family_size():
    assert translate(Txt2ImgBody(), default_size=1024).fields["width"] == 1024
    assert translate(Txt2ImgBody(height=640), default_size=1024).fields["height"] == 640
