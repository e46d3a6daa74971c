"""/controlnet/render_openpose_json (§2.3) and /controlnet/module_list (§2.1)."""

import numpy as np
from api_test_helpers import from_b64

from annotator.openpose_draw import BODY_COLOURS

POSE = {
    "people": [{"pose_keypoints_2d": [100, 40, 1, 100, 80, 1, 70, 80, 1] + [0, 0, 0] * 15}],
    "canvas_width": 200,
    "canvas_height": 160,
}


def test_render_draws_each_pose_file(controlnet_client):
    response = controlnet_client.post("/controlnet/render_openpose_json", json=[POSE, POSE])
    body = response.json()
    assert response.status_code == 200 and body["info"] == "Success" and len(body["images"]) == 2
    image = from_b64(body["images"][0])
    assert image.shape == (160, 200, 3)
    assert tuple(image[40, 100]) == BODY_COLOURS[0] and tuple(image[80, 70]) == BODY_COLOURS[2]
    assert image[150, 10].sum() == 0


def test_render_empty_list(controlnet_client):
    response = controlnet_client.post("/controlnet/render_openpose_json", json=[])
    assert response.status_code == 200 and response.json() == {"info": "No pose data detected."}


def test_render_refusals(controlnet_client):
    no_people = controlnet_client.post("/controlnet/render_openpose_json",
                                       json=[{"canvas_width": 10, "canvas_height": 10}])
    assert no_people.status_code == 422 and "info" not in no_people.json()
    bad_triplets = dict(POSE, people=[{"pose_keypoints_2d": [1, 2, 3, 4]}])
    response = controlnet_client.post("/controlnet/render_openpose_json", json=[bad_triplets])
    assert response.status_code == 422
    assert response.json()["field"] == "pose_data[0].people[0].pose_keypoints_2d"
    huge = dict(POSE, canvas_width=100000, canvas_height=100000)
    response = controlnet_client.post("/controlnet/render_openpose_json", json=[huge])
    assert response.status_code == 422 and response.json()["field"] == "pose_data[0]"


def test_module_list_names_labels_and_details(controlnet_client):
    body = controlnet_client.get("/controlnet/module_list").json()
    assert body["module_list"][0] == "none" and "canny" in body["module_list"]
    assert set(body["module_detail"]) == set(body["module_list"])
    assert body["module_detail"]["canny"]["sliders"][1] == {"name": "Low Threshold", "value": 100, "min": 1,
                                                            "max": 255, "step": 1}
    labels = controlnet_client.get("/controlnet/module_list", params={"alias_names": True}).json()
    assert "t2ia_color_grid" in labels["module_list"] and "color" not in labels["module_list"]
    assert labels["module_detail"]["t2ia_color_grid"]["sliders"][0]["name"] == "Resolution"
    assert np.all([isinstance(d["model_free"], bool) for d in labels["module_detail"].values()])
