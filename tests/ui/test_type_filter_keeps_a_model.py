"""The Control Type filter never leaves the user with no model when the checkpoint's family has one: a new user
with only the demo ControlNet (whose name says no control type) picked "Canny", saw the model list emptied and
the unit's status said "no ControlNet model selected"."""

from __future__ import annotations

import gradio as gr
from test_panel_build import _handler
from ui_model_files import write_controlnet

from lib_controlnet.models.registry import ModelRegistry
from lib_controlnet.ui import build_panel
from lib_controlnet.ui.control_type_filter import models_for_family, type_choices

DEMO = "demo-random-weights-controlnet-sd15"


def _demo_models(tmp_path) -> ModelRegistry:
    write_controlnet(tmp_path / f"{DEMO}.safetensors", "sd1")
    return ModelRegistry([tmp_path])


def test_a_type_no_model_name_mentions_lists_every_model_of_the_family(tmp_path, registry):
    models = _demo_models(tmp_path)
    (name,) = models.list_names()
    for control_type in ("Canny", "Depth", "OpenPose", "Lineart"):
        choices = type_choices(control_type, registry, models_for_family(models, "sd1"))
        assert choices.models == ["None", name] and choices.default_model == name and choices.every_model
    # a family with no model at all still has only "None"
    assert type_choices("Canny", registry, models_for_family(models, "sdxl")).models == ["None"]


def test_the_reference_filter_is_kept_when_a_model_matches(tmp_path, registry):
    models = _demo_models(tmp_path)
    write_controlnet(tmp_path / "control_v11p_sd15_canny.safetensors", "sd1")
    names = {e.stem: e.name for e in models.entries()}
    canny = type_choices("Canny", registry, models_for_family(models, "sd1"))
    assert canny.models == ["None", names["control_v11p_sd15_canny"]] and not canny.every_model


def test_picking_canny_in_the_panel_keeps_the_demo_model_and_the_unit_ready(tmp_path, registry, astronaut):
    models = _demo_models(tmp_path)
    (name,) = models.list_names()
    with gr.Blocks() as blocks:
        panel = build_panel("txt2img", 1, models=models, preprocessors=registry, checkpoint_family=lambda: "sd1")
    unit = panel.units[0]
    on_type = _handler(blocks, unit["control_type"], "change")
    module, model, *_ = on_type("Canny", "none", "None", False)
    assert module["value"] == "canny" and model["value"] == name and name in model["choices"]
    # the model already chosen stays when the type's list is every model
    assert on_type("Depth", "canny", name, False)[1]["value"] == name

    sync = _handler(blocks, unit["enabled"], "change", output=unit.state)
    values = [True, False, False, {"image": astronaut, "mask": None}, False, "canny", model["value"], 1.0, 0.0, 1.0,
              512, 100, 200, "Balanced", "Crop and Resize", "Both", True, "Hard Edge", "Fidelity"]
    state, status = sync(*values)
    assert state.model == name and "no ControlNet model selected" not in status
