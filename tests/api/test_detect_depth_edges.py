"""POST /controlnet/detect for the depth/normal/edge modules of issue 16 when their files are absent: a 404
naming the file and where it is published (never a 500), and depth_hand_refiner's 501."""

import pytest
from api_test_helpers import make_client

from annotator.neural import weights

MODULES = {
    "softedge_teed": "Annotators/7_model.pth", "softedge_anyline": "MistoLine/blob/main/Anyline/MTEED.pth",
    "depth_zoe": "ZoeD_M12_N.pt", "depth_leres": "res101.pth", "depth_leres++": "res101.pth",
    "normal_dsine": "Annotators/dsine.pt", "depth_anything": "checkpoints/depth_anything_vitl14.pth",
}


@pytest.fixture()
def empty_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "_folder", None)
    weights.set_weights_folder(str(tmp_path))
    yield tmp_path
    monkeypatch.setattr(weights, "_folder", None)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_missing_weights_are_a_404_naming_the_file(module, empty_folder, astronaut_png_b64):
    response = make_client().post("/controlnet/detect", json={
        "controlnet_module": module, "controlnet_input_images": [astronaut_png_b64], "controlnet_processor_res": 64})
    assert response.status_code == 404, response.text
    detail = response.json()["detail"]
    assert MODULES[module] in detail and str(empty_folder) in detail


def test_depth_hand_refiner_is_a_501(astronaut_png_b64):
    response = make_client().post("/controlnet/detect", json={
        "controlnet_module": "depth_hand_refiner", "controlnet_input_images": [astronaut_png_b64]})
    assert response.status_code == 501 and "MANO_RIGHT.pkl" in response.json()["detail"]
