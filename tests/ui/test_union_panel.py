"""The panel and /controlnet/control_types with a ControlNet Union file: listed under the types a union serves
by its header (its name does not say "union"), the Control Type radio picking the union task, pasted back."""

from __future__ import annotations

import gradio as gr
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from ui_model_files import write_controlnet, write_union

from lib_controlnet.api import create_router
from lib_controlnet.enums import UnionControlType
from lib_controlnet.models.registry import ModelRegistry
from lib_controlnet.ui import build_panel
from lib_controlnet.ui.control_type_filter import models_for_family, type_choices
from lib_controlnet.ui.model_family import model_family, model_kind
from lib_controlnet.ui.unit_values import VALUE_KEYS, panel_values, unit_from_values


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("union_models")
    write_union(folder / "xl_promax.safetensors")
    write_controlnet(folder / "canny_xl.safetensors", "sdxl")
    return folder


def names(folder):
    models = ModelRegistry([folder])
    return models, {n.split(" [")[0]: n for n in models.list_names()}


def test_header_says_union_and_sdxl(folder):
    assert model_kind(folder / "xl_promax.safetensors") == "controlnet_union"
    assert model_family(folder / "xl_promax.safetensors") == "sdxl"
    assert model_kind(folder / "canny_xl.safetensors") == "controlnet"


def test_union_files_are_listed_under_the_types_a_union_serves(folder, registry):
    models, by_stem = names(folder)
    listed = models_for_family(models, "sdxl")
    union = {by_stem["xl_promax"]}
    for tag in ("Depth", "OpenPose", "Canny", "Tile", "Inpaint", "Segmentation"):
        assert by_stem["xl_promax"] in type_choices(tag, registry, listed, union).models, tag
    shuffle = type_choices("Shuffle", registry, listed, union)
    assert shuffle.every_model  # no model serves Shuffle: the panel falls back to every model of the family
    assert by_stem["xl_promax"] not in models_for_family(models, "sd1")  # SDXL only

    app = FastAPI()
    app.include_router(create_router(models=models, unit_count=lambda: 2))
    types = TestClient(app).get("/controlnet/control_types").json()["control_types"]
    assert by_stem["xl_promax"] in types["Depth"]["model_list"]
    assert by_stem["xl_promax"] in types["Canny"]["model_list"]
    assert by_stem["xl_promax"] not in types["Shuffle"]["model_list"]
    assert by_stem["xl_promax"] in TestClient(app).get("/controlnet/model_list").json()["model_list"]


def test_the_control_type_radio_picks_the_union_task(folder, registry):
    models, by_stem = names(folder)
    with gr.Blocks() as blocks:
        panel = build_panel("txt2img", 1, models=models, preprocessors=registry, checkpoint_family=lambda: "sdxl")
    unit = panel.units[0]
    on_type = next(fn.fn for dep, fn in zip(blocks.dependencies, blocks.fns)
                   if unit["control_type"]._id in dep["targets"] and dep["trigger"] == "change")
    *_, union_type = on_type("Depth", "none", "None", False)
    assert union_type == "Depth"
    *_, union_type = on_type("All", "none", "None", False)
    assert union_type == "Unknown"

    values = {k: unit[k].value for k in VALUE_KEYS if k != "image"}
    values.update(image=None, enabled=True, module="none", model=by_stem["xl_promax"], union_control_type="Depth")
    state = unit_from_values(values, preprocessors=registry, tab="txt2img")
    assert state.union_control_type == UnionControlType.DEPTH
    assert panel_values(state, preprocessors=registry, tab="txt2img")["union_control_type"] == "Depth"
