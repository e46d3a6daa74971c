"""POST /controlnet/detect: the reference's request/response (§2.2) and its errors, plus ours for bad input."""

import numpy as np
import pytest
from api_test_helpers import from_b64, make_client, to_b64

from annotator.canny import canny
from lib_controlnet.preprocessors import Preprocessor, Registry, default_registry


def post(client, **body):
    return client.post("/controlnet/detect", json=body)


def test_canny_map_comes_back_as_png(controlnet_client, astronaut_png_b64, astronaut_rgb):
    response = post(controlnet_client, controlnet_module="canny", controlnet_input_images=[astronaut_png_b64],
                    controlnet_processor_res=512, controlnet_threshold_a=100, controlnet_threshold_b=200)
    assert response.status_code == 200
    body = response.json()
    assert body["info"] == "Success" and set(body) == {"info", "images"}
    assert np.array_equal(from_b64(body["images"][0]), canny(astronaut_rgb, 512, 100, 200))


def test_defaults_labels_and_several_images(controlnet_client, astronaut_png_b64, astronaut_rgb):
    # -1 everywhere means the sliders' defaults; a label works like the name; one map per image.
    response = post(controlnet_client, controlnet_module="invert (from white bg & black line)",
                    controlnet_input_images=[astronaut_png_b64, "data:image/png;base64," + astronaut_png_b64])
    images = response.json()["images"]
    assert len(images) == 2 and all(np.array_equal(from_b64(i), 255 - astronaut_rgb) for i in images)
    half = post(controlnet_client, controlnet_module="canny", controlnet_input_images=[astronaut_png_b64],
                controlnet_processor_res=256)
    assert from_b64(half.json()["images"][0]).shape == (256, 256, 3)


def test_jpeg_input(controlnet_client, grace_hopper_jpeg_b64):
    response = post(controlnet_client, controlnet_module="blur_gaussian",
                    controlnet_input_images=[grace_hopper_jpeg_b64], controlnet_processor_res=256)
    assert response.status_code == 200
    assert from_b64(response.json()["images"][0]).shape == (300, 256, 3)


def test_openpose_family_also_returns_pose_json(controlnet_client, grace_hopper_jpeg_b64):
    response = post(controlnet_client, controlnet_module="mediapipe_openpose_full",
                    controlnet_input_images=[grace_hopper_jpeg_b64])
    body = response.json()
    assert response.status_code == 200 and set(body) == {"info", "images", "poses"}
    pose = body["poses"][0]
    assert (pose["canvas_width"], pose["canvas_height"]) == (512, 600)
    assert len(pose["people"]) == 1 and len(pose["people"][0]["pose_keypoints_2d"]) == 54
    # The JSON renders back to the very map detect returned.
    rendered = controlnet_client.post("/controlnet/render_openpose_json", json=[pose]).json()["images"][0]
    assert np.array_equal(from_b64(rendered), from_b64(body["images"][0]))


def test_inpaint_needs_masks_and_shows_them_half_transparent(controlnet_client, astronaut_rgb):
    mask = np.zeros((512, 512), np.uint8)
    mask[100:200, 100:300] = 255
    image_b64 = to_b64(astronaut_rgb)
    missing = post(controlnet_client, controlnet_module="inpaint_only", controlnet_input_images=[image_b64])
    assert missing.status_code == 422
    assert missing.json()["detail"] == "Preprocessor inpaint_only requires `controlnet_masks` param."
    # A grey (mode L) PNG mask, which the reference crashes on.
    ok = post(controlnet_client, controlnet_module="inpaint_only", controlnet_input_images=[image_b64],
              controlnet_masks=[to_b64(mask)])
    shown = from_b64(ok.json()["images"][0])
    assert shown.shape == (512, 512, 4) and np.array_equal(shown[:, :, :3], astronaut_rgb)
    assert (shown[100:200, 100:300, 3] == 128).all() and (shown[300:, :, 3] == 255).all()
    # An RGB mask is read by its first channel.
    rgb_mask = post(controlnet_client, controlnet_module="inpaint", controlnet_input_images=[image_b64],
                    controlnet_masks=[to_b64(np.repeat(mask[:, :, None], 3, axis=2))])
    assert np.array_equal(from_b64(rgb_mask.json()["images"][0]), shown)


def test_mask_size_must_match(controlnet_client, astronaut_rgb):
    response = post(controlnet_client, controlnet_module="inpaint", controlnet_input_images=[to_b64(astronaut_rgb)],
                    controlnet_masks=[to_b64(np.zeros((100, 100), np.uint8))])
    assert response.status_code == 422
    assert response.json()["field"] == "controlnet_masks[0]" and "not aligned" in response.json()["detail"]


def test_mask_for_a_module_without_masks_is_ignored(controlnet_client, astronaut_rgb, astronaut_png_b64):
    response = post(controlnet_client, controlnet_module="canny", controlnet_input_images=[astronaut_png_b64],
                    controlnet_masks=[to_b64(np.full((512, 512), 255, np.uint8))])
    assert np.array_equal(from_b64(response.json()["images"][0]), canny(astronaut_rgb, 512, 100, 200))


def test_sketch_mask_becomes_the_scribble(controlnet_client, astronaut_png_b64):
    strokes = np.zeros((512, 512), np.uint8)
    strokes[250:260, 50:450] = 255
    response = post(controlnet_client, controlnet_module="scribble_sketch",
                    controlnet_input_images=[astronaut_png_b64], controlnet_masks=[to_b64(strokes)])
    assert np.array_equal(from_b64(response.json()["images"][0])[:, :, 0], strokes)


@pytest.mark.parametrize("body, status, detail, field", [
    ({"controlnet_module": "no_such_module", "controlnet_input_images": ["x"]}, 422,
     "Module not available: 'no_such_module' is neither a preprocessor's name nor its label "
     "(GET /controlnet/module_list lists them)", "controlnet_module"),
    ({"controlnet_module": "canny"}, 422, "No image selected", "controlnet_input_images"),
    ({"controlnet_module": "canny", "controlnet_input_images": []}, 422, "No image selected",
     "controlnet_input_images"),
    ({"controlnet_module": "canny", "controlnet_input_images": ["not base64!"]}, 422,
     "Invalid encoded image: not base64 (a file path or URL is never read)", "controlnet_input_images[0]"),
    ({"controlnet_module": "canny", "controlnet_input_images": ["aGVsbG8gd29ybGQ="]}, 422, None,
     "controlnet_input_images[0]"),
    ({"controlnet_module": "canny", "controlnet_input_images": ["https://example.com/cat.png"]}, 422, None,
     "controlnet_input_images[0]"),
])
def test_refusals(controlnet_client, body, status, detail, field):
    response = post(controlnet_client, **body)
    assert response.status_code == status
    assert response.json()["field"] == field and response.json()["error"] == "InputError"
    if detail:
        assert response.json()["detail"] == detail


def test_out_of_range_sliders_are_refused_naming_the_field(controlnet_client, astronaut_png_b64):
    response = post(controlnet_client, controlnet_module="canny", controlnet_input_images=[astronaut_png_b64],
                    controlnet_threshold_b=999)
    assert response.status_code == 422 and response.json()["field"] == "controlnet_threshold_b"
    assert "High Threshold" in response.json()["detail"]
    # Values for sliders a module does not have are ignored, as in the reference.
    ignored = post(controlnet_client, controlnet_module="invert", controlnet_input_images=[astronaut_png_b64],
                   controlnet_processor_res=4096, controlnet_threshold_a=64, controlnet_threshold_b=64)
    assert ignored.status_code == 200


def test_wrong_json_types_get_a_422_in_our_shape(controlnet_client):
    # FastAPI's validation, answered like every other refusal (pydantic's list stays under "errors")
    response = post(controlnet_client, controlnet_module="canny", controlnet_input_images="abc")
    assert response.status_code == 422 and response.json()["field"] == "controlnet_input_images"
    assert response.json()["detail"] == "controlnet_input_images: value is not a valid list"
    assert response.json()["errors"][0]["loc"][-1] == "controlnet_input_images"


def test_a_file_path_is_never_opened(controlnet_client, grace_hopper_path, monkeypatch):
    opened = []
    real_open = open

    def spy(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    response = post(controlnet_client, controlnet_module="canny", controlnet_input_images=[grace_hopper_path])
    assert response.status_code == 422 and grace_hopper_path not in opened


def test_missing_dependency_is_a_501(astronaut_png_b64, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mediapipe", None)
    response = post(make_client(), controlnet_module="mediapipe_face", controlnet_input_images=[astronaut_png_b64])
    assert response.status_code == 501 and response.json()["error"] == "MissingDependencyError"
    assert "mediapipe==0.10.9" in response.json()["detail"]


def test_unsupported_and_data_returning_modules(astronaut_png_b64):
    import base64
    import io

    import torch

    registry = Registry([default_registry().get("canny"),
                         Preprocessor(name="clip_vision", run=lambda image, p: image, returns_image=False),
                         Preprocessor(name="mean_colour", returns_image=False,
                                      run=lambda image, p: torch.tensor(image.reshape(-1, 3).mean(axis=0)))])
    client = make_client(registry)
    refused = post(client, controlnet_module="clip_vision", controlnet_input_images=[astronaut_png_b64])
    assert refused.status_code == 422 and refused.json()["detail"] == "Module not supported"
    data = post(client, controlnet_module="mean_colour", controlnet_input_images=[astronaut_png_b64]).json()
    assert set(data) == {"info", "tensor"}
    value = torch.load(io.BytesIO(base64.b64decode(data["tensor"][0])), weights_only=True)
    assert value.shape == (3,) and 0 < float(value.min()) < 255
