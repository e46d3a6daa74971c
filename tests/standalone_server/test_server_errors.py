"""Refusals: a clear 4xx naming the unit and the field, never a 200 made without a requested unit."""

from __future__ import annotations

import pytest

from tests.standalone_server.server_helpers import body, gradient, png_b64, unit

UNIT_ERRORS = [
    # (unit fields, status, field, words in the message)
    (dict(module="no_such_preprocessor"), 422, "module", "not a known preprocessor"),
    (dict(model="no_such_model"), 404, "model", "not found"),
    (dict(model="None"), 422, "model", "no ControlNet model selected"),
    (dict(image="this is not base64!"), 422, "image", "Invalid encoded image"),
    (dict(image=None), 422, "image", "no input image"),
    (dict(weight=3.0), 422, "weight", "between 0 and 2"),
    (dict(advanced_weighting=[1.0] * 5), 422, "advanced_weighting", "13"),
    (dict(guidance_start=0.8, guidance_end=0.2), 422, "guidance_start", "greater than"),
    (dict(control_mode="Sometimes"), 422, "control_mode", "Sometimes"),
    (dict(resize_mode=9), 422, "resize_mode", "resize mode"),
]


@pytest.mark.parametrize("fields, status, field, words", UNIT_ERRORS, ids=[e[2] + "-" + str(e[1]) for e in UNIT_ERRORS])
def test_a_bad_unit_is_refused_naming_unit_and_field(client, fields, status, field, words):
    good = unit()
    response = client.post("/sdapi/v1/txt2img", json=body(good, unit(**fields)))
    assert response.status_code == status, response.text
    error = response.json()
    assert error["unit"] == 1 and error["field"] == field
    assert words in error["message"]
    assert error["detail"].startswith(f"ControlNet unit 1, field '{field}': ")
    assert "images" not in error


def test_unknown_alwayson_script_is_422_like_a1111(client):
    payload = body()
    payload["alwayson_scripts"] = {"controlnet": {"args": []}, "adetailer": {"args": []}}
    response = client.post("/sdapi/v1/txt2img", json=payload)
    assert response.status_code == 422
    assert response.json()["detail"] == "always on script adetailer not found"


def test_more_units_than_slots_is_refused(client, service):
    response = client.post("/sdapi/v1/txt2img", json=body(*[unit()] * (service.config.unit_slots + 1)))
    assert response.status_code == 422
    assert response.json()["field"] == "alwayson_scripts.controlnet.args"


def test_a_positional_unit_is_refused(client):
    response = client.post("/sdapi/v1/txt2img", json=body([True, "canny", "model"]))
    assert response.status_code == 422 and response.json()["unit"] == 0


@pytest.mark.parametrize("fields, status, field", [
    (dict(width=100), 422, "width"),
    (dict(sampler_name="Heun++"), 422, "sampler_name"),
    (dict(enable_hr=True, hr_upscaler="R-ESRGAN 4x+"), 422, "hr_upscaler"),
    (dict(enable_hr=True, hr_sampler_name="Heun++"), 422, "hr_sampler_name"),
    (dict(enable_hr=True, firstpass_image="abc"), 422, "firstpass_image"),
    (dict(override_settings={"sd_model_checkpoint": "v1-5-pruned.safetensors"}), 404,
     "override_settings.sd_model_checkpoint"),
])
def test_bad_generation_fields_are_refused(client, fields, status, field):
    response = client.post("/sdapi/v1/txt2img", json=body(**fields))
    assert response.status_code == status, response.text
    assert response.json()["field"] == field


def test_a1111_refusals_keep_their_answers(client):
    assert client.post("/sdapi/v1/txt2img", json=body(script_name="X/Y/Z plot")).json()["detail"] \
        == "Script 'X/Y/Z plot' not found"
    response = client.post("/sdapi/v1/img2img", json=body())
    assert response.status_code == 404 and response.json()["detail"] == "Init image not found"
    response = client.post("/sdapi/v1/txt2img", json=body(steps="many"))
    # FastAPI's validation, in the one error shape (pydantic's list under "errors")
    assert response.status_code == 422 and response.json()["field"] == "steps"
    assert response.json()["detail"] == "steps: value is not a valid integer"
    assert isinstance(response.json()["errors"], list)


def test_bad_init_image_names_its_index(client):
    response = client.post("/sdapi/v1/img2img", json=body(init_images=[png_b64(gradient()), "%%%"]))
    assert response.status_code == 422
    assert response.json()["field"] == "init_images[1]"


def test_the_server_still_generates_after_errors(client):
    assert client.post("/sdapi/v1/txt2img", json=body(unit(model="nope"))).status_code == 404
    assert client.post("/sdapi/v1/txt2img", json=body(unit(), steps=2)).status_code == 200
    assert client.get("/sdapi/v1/progress").json()["state"]["job_count"] == 0
