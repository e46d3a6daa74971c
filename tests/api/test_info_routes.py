"""GET /controlnet/version, model_list, control_types, settings on a real model folder."""

import hashlib

import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from safetensors.torch import save_file

from lib_controlnet.api import create_router
from lib_controlnet.models.registry import ModelRegistry


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ControlNet")
    for stem in ("control_v11p_sd15_canny", "control_sd15_openpose", "t2iadapter_seg_sd14v1", "controlnet_union_xl"):
        save_file({"w": torch.arange(300_000, dtype=torch.float32) * (len(stem))}, str(folder / f"{stem}.safetensors"))
    app = FastAPI()
    app.include_router(create_router(models=ModelRegistry([folder]), unit_count=lambda: 4))
    return TestClient(app), folder


def expected_name(path):
    with open(path, "rb") as f:
        f.seek(0x100000)
        return f"{path.stem} [{hashlib.sha256(f.read(0x10000)).hexdigest()[:8]}]"


def test_version_settings_and_model_list(client):
    c, folder = client
    assert c.get("/controlnet/version").json() == {"version": 3}
    assert c.get("/controlnet/settings").json() == {"control_net_unit_count": 4}
    names = c.get("/controlnet/model_list").json()["model_list"]
    assert sorted(names) == sorted(expected_name(p) for p in folder.iterdir())


def test_control_types_follow_the_reference_algorithm(client):
    c, folder = client
    types = c.get("/controlnet/control_types").json()["control_types"]
    assert types["All"]["default_option"] == "none" and types["All"]["model_list"][0] == "None"
    canny = types["Canny"]
    assert canny["default_option"] == "canny" and "canny" in canny["module_list"]
    assert [m.split(" [")[0] for m in canny["model_list"]] == ["None", "control_v11p_sd15_canny", "controlnet_union_xl"]
    assert canny["default_model"].startswith("control_v11p_sd15_canny")  # the first name with "11"
    assert [m.split(" [")[0] for m in types["OpenPose"]["model_list"]] == ["None", "control_sd15_openpose",
                                                                            "controlnet_union_xl"]
    assert types["OpenPose"]["default_model"].startswith("control_sd15_openpose")  # no "11": the first model
