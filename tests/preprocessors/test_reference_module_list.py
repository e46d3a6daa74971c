"""The whole list: every one of the reference's 72 preprocessors is registered as the reference declares it,
is listed by /controlnet/module_list (names, and labels with alias_names=true) with the reference's sliders,
/controlnet/control_types has the reference's 21 types, and on a real photograph every module answers 200 with
a map, or 404 / 501 naming the missing file or package: never 500.

Modules that other issues build are xfail while they are missing (reference_modules.PENDING says who builds
them); once registered they are checked like the rest, with no edit here.
"""

import numpy as np
import pytest
import skimage.data
from fastapi import FastAPI
from fastapi.testclient import TestClient
from reference_modules import CONTROL_TYPES, PENDING, PENDING_TYPES, REFERENCE

from annotator.neural import weights
from lib_controlnet.api import create_router
from lib_controlnet.api.detect import NOT_SUPPORTED_HERE
from lib_controlnet.models.registry import ModelRegistry
from lib_controlnet.preprocessors import ResultCache, default_registry
from tests.api.api_test_helpers import from_b64, to_b64

WEIGHT_SUFFIXES = (".pth", ".pt", ".onnx", ".safetensors", ".torchscript", ".bin", ".ckpt")


def _registered_or_xfail(name):
    p = default_registry().get(name)
    if p is None or p.name != name:
        if name in PENDING:
            pytest.xfail(f"{name} not registered yet: {PENDING[name]}")
        pytest.fail(f"the reference's module {name!r} is not registered")
    return p


def _slider(slider):
    return None if not slider.visible else (slider.label, slider.value, slider.minimum, slider.maximum, slider.step)


@pytest.mark.parametrize("name", list(REFERENCE))
def test_declared_as_the_reference_declares_it(name):
    p = _registered_or_xfail(name)
    entry = REFERENCE[name]
    assert default_registry().get(entry.label) is p
    assert (p.label, p.priority, p.tags, p.model_free) == (entry.label, entry.priority, entry.tags, entry.model_free)
    assert (_slider(p.slider_1), _slider(p.slider_2)) == (entry.slider_a, entry.slider_b)
    if entry.resolution is None:
        assert not p.resolution.visible
    else:
        assert _slider(p.resolution) == ("Resolution", entry.resolution, 64, 2048, 8)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = FastAPI()
    app.include_router(create_router(default_registry(), ResultCache(),
                                     models=ModelRegistry([tmp_path_factory.mktemp("ControlNet")])))
    return TestClient(app)


@pytest.fixture(scope="module")
def listed(client):
    by_name = client.get("/controlnet/module_list").json()
    by_label = client.get("/controlnet/module_list", params={"alias_names": True}).json()
    return by_name, by_label


@pytest.mark.parametrize("name", list(REFERENCE))
def test_module_list_route_lists_it_with_the_references_sliders(name, listed):
    p = _registered_or_xfail(name)
    entry = REFERENCE[name]
    by_name, by_label = listed
    assert name in by_name["module_list"] and entry.label in by_label["module_list"]
    sliders = [s for s in (_res(entry), entry.slider_a, entry.slider_b) if s is not None]
    expected = [{"name": s[0], "value": s[1], "min": s[2], "max": s[3], "step": s[4]} for s in sliders]
    assert by_name["module_detail"][name]["sliders"] == expected
    assert by_label["module_detail"][entry.label] == by_name["module_detail"][name]
    assert by_name["module_detail"][name]["model_free"] == entry.model_free == p.model_free


def _res(entry):
    return None if entry.resolution is None else ("Resolution", entry.resolution, 64, 2048, 8)


@pytest.mark.parametrize("tag", CONTROL_TYPES)
def test_control_types_route_has_the_references_types(tag, client):
    types = client.get("/controlnet/control_types").json()["control_types"]
    if tag not in types and tag in PENDING_TYPES:
        pytest.xfail(f"control type {tag} comes with its modules: {PENDING_TYPES[tag]}")
    assert tag in types
    expected = [e.label for n, e in REFERENCE.items() if (tag == "All" or tag in e.tags) and n in default_registry()]
    assert set(expected) <= set(types[tag]["module_list"])


@pytest.fixture(scope="module")
def empty_annotator_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("no_annotator_weights")
    saved = weights._folder
    weights.set_weights_folder(str(folder))
    yield folder
    weights._folder = saved


@pytest.fixture(scope="module")
def photo_b64():
    return to_b64(skimage.data.astronaut()[::2, ::2].copy())  # a real photograph, 256 x 256


@pytest.mark.parametrize("name", list(REFERENCE))
def test_every_module_on_a_photo_answers_a_map_or_names_what_is_missing(name, client, photo_b64,
                                                                        empty_annotator_folder):
    p = _registered_or_xfail(name)
    body = {"controlnet_module": name, "controlnet_input_images": [photo_b64], "controlnet_processor_res": 256}
    if p.requires_mask:
        mask = np.zeros((256, 256), np.uint8)
        mask[64:192, 64:192] = 255
        body["controlnet_masks"] = [to_b64(mask)]
    response = client.post("/controlnet/detect", json=body)  # a 500 raises here (TestClient re-raises it)
    detail = response.json().get("detail", "")
    if name in NOT_SUPPORTED_HERE:
        assert response.status_code == 422 and "not supported" in detail
    elif response.status_code == 200:
        result = response.json()
        if p.returns_image:
            out = from_b64(result["images"][0])
            assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] in (3, 4) and out.size > 0
        else:
            assert result.get("tensor")
    elif response.status_code == 404:
        assert str(empty_annotator_folder) in detail and any(s in detail for s in WEIGHT_SUFFIXES), detail
        assert "https://" in detail  # where the file is published
    else:  # a package to install, or (a module this extension cannot run) the files it would need and where
        assert response.status_code == 501, (response.status_code, detail)
        names_files = any(s in detail for s in WEIGHT_SUFFIXES + (".pkl", ".task")) and "https://" in detail
        assert "pip install" in detail or names_files, detail
