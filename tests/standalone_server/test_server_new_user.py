"""What a new user ran into on a fresh clone, through the real server: each test here failed before its fix."""

from __future__ import annotations

import base64
import re

import pytest

from tests.standalone_server.server_helpers import body, info, ok, png_b64, square, unit

NOT_AN_IMAGE = base64.b64encode(b"%PDF-1.4 this is a text file, not a picture").decode()


def test_negative_sliders_mean_the_default_and_the_response_says_so(client):
    # the reference's documented default is -1 and its own tests send -100
    reply = ok(client.post("/sdapi/v1/txt2img", json=body(unit(processor_res=-100, threshold_a=-100,
                                                                threshold_b=-7))))
    notes = [w for w in reply["warnings"] if w.startswith("ControlNet unit 0: ")]
    assert len(notes) == 3 and "processor_res -100 is negative" in notes[0]
    assert info(reply)["warnings"] == reply["warnings"]
    written = info(reply)["extra_generation_params"]["ControlNet 0"]
    assert "Processor Res: 512, Threshold A: 100.0, Threshold B: 200.0" in written
    # -1 is the default without a word; a positive value out of range is still refused
    assert not [w for w in ok(client.post("/sdapi/v1/txt2img", json=body(unit(threshold_a=-1))))["warnings"]
                if w.startswith("ControlNet unit")]
    refused = client.post("/sdapi/v1/txt2img", json=body(unit(threshold_a=300)))
    assert refused.status_code == 422 and refused.json()["field"] == "threshold_a"


def test_pixel_perfect_with_a_bad_processor_res_warns(client):
    reply = ok(client.post("/sdapi/v1/txt2img", json=body(unit(pixel_perfect=True, processor_res=10))))
    assert any("processor_res 10 is not used: pixel perfect" in w for w in reply["warnings"])


def test_detect_takes_negative_sliders_with_warnings(client):
    reply = ok(client.post("/controlnet/detect", json={
        "controlnet_module": "canny", "controlnet_input_images": [png_b64(square())],
        "controlnet_processor_res": 64, "controlnet_threshold_a": -100, "controlnet_threshold_b": -100}))
    assert reply["info"] == "Success" and len(reply["images"]) == 1
    assert len(reply["warnings"]) == 2 and "controlnet_threshold_a -100 is negative" in reply["warnings"][0]


@pytest.mark.parametrize("route, payload, field", [
    ("/sdapi/v1/txt2img", body(unit(image=NOT_AN_IMAGE)), "image"),
    ("/sdapi/v1/img2img", body(init_images=[NOT_AN_IMAGE]), "init_images[0]"),
    ("/controlnet/detect", {"controlnet_module": "canny", "controlnet_input_images": [NOT_AN_IMAGE]},
     "controlnet_input_images[0]"),
])
def test_a_non_image_upload_is_named_as_such(client, route, payload, field):
    response = client.post(route, json=payload)
    assert response.status_code == 422 and response.json()["field"] == field
    text = response.json()["detail"]
    assert "BytesIO" not in text and "0x" not in text
    assert "not an image in a format read here (PNG, JPEG, WEBP, BMP, GIF, TIFF)" in text


@pytest.mark.parametrize("fields, field", [
    (dict(width=100), "width"), (dict(steps=0), "steps"), (dict(sampler_name="Heun++"), "sampler_name"),
    (dict(cfg_scale=-1), "cfg_scale"), (dict(enable_hr=True, hr_scale=2), None),
])
def test_generation_fields_are_not_called_controlnet_fields(client, fields, field):
    response = client.post("/sdapi/v1/txt2img", json=body(**fields))
    if field is None:  # hires fix: another helper is adding it to this host; skip once it generates
        if response.status_code == 200:
            return
        field = "enable_hr"
    assert response.status_code == 422 and response.json()["field"] == field
    assert response.json()["detail"].startswith(f"Generation field '{field}': ")
    # a unit's own field still says ControlNet
    response = client.post("/sdapi/v1/txt2img", json=body(unit(weight=5)))
    assert response.json()["detail"].startswith("ControlNet unit 0, field 'weight': ")


def test_the_sampler_error_lists_what_the_samplers_route_lists(client):
    detail = client.post("/sdapi/v1/txt2img", json=body(sampler_name="Heun++")).json()["detail"]
    listed = {s["name"] for s in client.get("/sdapi/v1/samplers").json()}
    named = re.search(r"\(available: ([^;)]*)", detail).group(1).split(", ")
    assert set(named) == listed
    assert "DPM++ 2M Karras" not in named
    ok(client.post("/sdapi/v1/txt2img", json=body(sampler_name="DPM++ 2M Karras", steps=2)))  # still accepted


def test_detect_names_the_module_it_does_not_know(client):
    response = client.post("/controlnet/detect", json={"controlnet_module": "cany",
                                                        "controlnet_input_images": [png_b64(square())]})
    assert response.status_code == 422 and response.json()["field"] == "controlnet_module"
    assert response.json()["detail"].startswith("Module not available: 'cany' ")


@pytest.mark.parametrize("payload, field", [
    ({"controlnet_module": "canny", "controlnet_threshold_a": "high"}, "controlnet_threshold_a"),
    ({"controlnet_module": "canny", "controlnet_input_images": "abc"}, "controlnet_input_images"),
    ({"controlnet_module": ["canny"]}, "controlnet_module"),
])
def test_detect_answers_a_wrong_typed_field_in_our_shape(client, payload, field):
    response = client.post("/controlnet/detect", json=payload)
    assert response.status_code == 422
    error = response.json()
    assert error["field"] == field and error["error"] == "RequestValidationError"
    assert isinstance(error["detail"], str) and error["detail"].startswith(f"{field}: ")


def test_a_body_that_is_not_json_is_answered_in_our_shape(client):
    for route in ("/controlnet/detect", "/sdapi/v1/txt2img"):
        response = client.post(route, content=b"{not json", headers={"content-type": "application/json"})
        assert response.status_code == 422
        assert isinstance(response.json()["detail"], str) and "field" in response.json()
