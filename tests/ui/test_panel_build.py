"""Building the panel on gradio 3.41 (A1111 1.9/1.10): slots, element ids, per-tab widgets, and its events."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest

from lib_controlnet.enums import PuLIDMode
from lib_controlnet.ui import PanelStates, build_panel, compat
from lib_controlnet.ui.demo_app import build_demo
from lib_controlnet.ui.unit_values import VALUE_KEYS
from lib_controlnet.units.unit import Unit


def _ids(blocks: gr.Blocks) -> set[str]:
    return {b.elem_id for b in blocks.blocks.values() if getattr(b, "elem_id", None)}


def _handler(blocks: gr.Blocks, component, event: str, output=None):
    """The function gradio runs when `component` fires `event` (the one writing `output`, if given)."""
    found = [
        (dep, fn) for dep, fn in zip(blocks.dependencies, blocks.fns)
        if component._id in dep["targets"] and dep["trigger"] == event
        and (output is None or output._id in dep["outputs"])
    ]
    assert len(found) == 1, f"{len(found)} handlers for {event} on {component.elem_id}"
    return found[0][1].fn


def _build(tab="txt2img", unit_count=3, total=None, **kwargs):
    with gr.Blocks() as blocks:
        panel = build_panel(tab, unit_count, total_slots=total, **kwargs)
    return blocks, panel


def test_runs_on_gradio_3_41_with_the_sketch_image():
    assert gr.__version__ == "3.41.2"
    assert not compat.IS_GRADIO_4
    assert compat.js_kwargs("() => 1") == {"_js": "() => 1"}


def test_one_state_per_slot_each_holding_a_unit(models, registry):
    blocks, panel = _build(models=models, preprocessors=registry, total=10)
    assert isinstance(panel, PanelStates) and len(panel) == 10 and len(panel.units) == 3
    assert all(isinstance(s, gr.State) for s in panel)
    ui_units = [s.value for s in panel[:3]]
    assert all(isinstance(u, Unit) and u.is_ui and not u.enabled for u in ui_units)
    # the panel's initial values as a unit: none preprocessor with the sliders it shows
    assert (ui_units[0].module, ui_units[0].processor_res, ui_units[0].threshold_a) == ("none", 512, 0.5)
    extra = [s.value for s in panel[3:]]
    assert all(isinstance(u, Unit) and not u.enabled and not u.is_ui for u in extra)
    assert panel.units[0].state is panel[0]


def test_reference_element_ids(models, registry):
    blocks, _ = _build(models=models, preprocessors=registry)
    ids = _ids(blocks)
    for i in range(3):
        prefix = f"txt2img_controlnet_ControlNet-{i}"
        for widget in ("enable_checkbox", "low_vram_checkbox", "pixel_perfect_checkbox", "preprocessor_dropdown",
                       "model_dropdown", "refresh_models", "trigger_preprocessor", "control_weight_slider",
                       "start_control_step_slider", "ending_control_step_slider", "preprocessor_resolution_slider",
                       "threshold_A_slider", "threshold_B_slider", "control_mode_radio", "resize_mode_radio",
                       "hr_option_radio", "pulid_mode_radio", "type_filter_radio", "send_dimen_button",
                       "preprocessor_preview_checkbox", "open_new_canvas_button", "canvas_width", "canvas_height",
                       "canvas_create_button"):
            assert f"{prefix}_controlnet_{widget}" in ids, widget
        assert f"{prefix}_input_image" in ids and f"{prefix}_generated_image" in ids
    assert {"txt2img_controlnet", "txt2img_controlnet_tabs", "controlnet"} <= ids


def test_single_unit_panel_uses_the_reference_name(models, registry):
    blocks, panel = _build(unit_count=1, models=models, preprocessors=registry)
    ids = _ids(blocks)
    assert "txt2img_controlnet_ControlNet_controlnet_enable_checkbox" in ids
    assert "txt2img_controlnet_tabs" not in ids  # no tab bar for one unit
    assert len(panel) == 1


def test_txt2img_and_img2img_differ_where_the_reference_does(models, registry):
    _, txt = _build("txt2img", 1, models=models, preprocessors=registry)
    _, img = _build("img2img", 1, models=models, preprocessors=registry)
    t, i = txt.units[0], img.units[0]
    assert t["hr_option"].visible and not i["hr_option"].visible
    assert not t["upload_independent"].visible and i["upload_independent"].visible
    assert i["upload_independent"].label == "Upload independent control image"
    assert t["image_group"].visible and not i["image_group"].visible  # img2img: the init image by default
    assert t["image"].tool == "sketch" and t["image"].source == "upload"


def test_send_dimensions_only_with_targets(models, registry):
    with gr.Blocks() as blocks:
        width, height = gr.Slider(value=512), gr.Slider(value=512)
        panel = build_panel("txt2img", 1, models=models, preprocessors=registry,
                            send_dimensions_targets=(width, height))
    unit = panel.units[0]
    assert unit["send_dimensions"].visible
    send = _handler(blocks, unit["send_dimensions"], "click")
    w, h, message = send({"image": np.zeros((300, 200, 3), np.uint8), "mask": None})
    assert (w, h) == (200, 300) and "200×300" in message
    _, _, message = send(None)
    assert "no control image" in message
    _, plain = _build(unit_count=1, models=models, preprocessors=registry)
    assert not plain.units[0]["send_dimensions"].visible


def test_preprocessor_change_event_updates_the_sliders(models, registry):
    blocks, panel = _build(unit_count=1, models=models, preprocessors=registry)
    unit = panel.units[0]
    on_module = _handler(blocks, unit["module"], "change", output=unit["threshold_a"])
    res, a, b, mode, model, _ = on_module("scribble_xdog", False)
    assert a["label"] == "XDoG Threshold" and (a["minimum"], a["maximum"], a["value"]) == (1, 64, 32)
    assert b["visible"] is False and res["visible"] is True and mode["visible"] is True
    assert model["label"] == "Model"
    res, a, b, _, _, _ = on_module("canny", True)  # pixel perfect: the resolution is computed, its slider hidden
    assert res["visible"] is False and (a["label"], b["label"]) == ("Low Threshold", "High Threshold")
    *_, model, _ = on_module("reference_only", False)  # a model-free preprocessor says it needs no model
    assert model["label"] == "Model (not needed: reference_only uses none)"


def test_control_type_event_narrows_both_dropdowns(models, registry):
    blocks, panel = _build(unit_count=1, models=models, preprocessors=registry, checkpoint_family=lambda: "sdxl")
    unit = panel.units[0]
    on_type = _handler(blocks, unit["control_type"], "change")
    module, model, res, a, b, _, union_type = on_type("Canny", "none", "None", False)
    assert module["value"] == "canny" and "canny" in module["choices"] and "none" in module["choices"]
    assert union_type == "Hard Edge"  # the union task of the type (the reference's hidden field)
    assert model["value"].startswith("canny_b ") and all(not m.startswith("canny_a") for m in model["choices"])
    assert a["label"] == "Low Threshold"  # sliders follow the type's preprocessor in the same response


def test_unit_event_recomputes_state_and_status(models, registry, astronaut):
    blocks, panel = _build(unit_count=1, models=models, preprocessors=registry)
    unit = panel.units[0]
    values = [unit[k].value if k != "image" else None for k in
              ("enabled", "low_vram", "pixel_perfect", "image", "upload_independent", "module", "model", "weight",
               "guidance_start", "guidance_end", "processor_res", "threshold_a", "threshold_b", "control_mode",
               "resize_mode", "hr_option", "inpaint_crop_input_image", "union_control_type", "pulid_mode")]
    sync = _handler(blocks, unit["enabled"], "change", output=unit.state)
    assert sync is unit.sync
    values[0] = True
    state, status = sync(*values)
    assert isinstance(state, Unit) and state.enabled and "no control image" in status
    values[3] = {"image": astronaut, "mask": None}
    values[5], values[6] = "canny", [n for n in models.list_names() if n.startswith("canny_a")][0]
    values[11], values[12] = 100, 200
    state, status = sync(*values)
    assert state.module == "canny" and np.array_equal(state.image, astronaut) and status.startswith("**Ready:**")


def test_the_pulid_mode_radio_shows_for_a_pulid_model_and_reaches_the_unit(models, registry):
    blocks, panel = _build(unit_count=1, models=models, preprocessors=registry)
    unit = panel.units[0]
    assert unit["pulid_mode"].visible is False and unit["pulid_mode"].value == "Fidelity"
    assert [c[0] for c in unit["pulid_mode"].choices] == ["Fidelity", "Extremely style"]
    show = _handler(blocks, unit["model"], "change", output=unit["pulid_mode"])
    assert show("ip-adapter_pulid_sdxl_fp16 [0a1b2c3d]")["visible"] is True  # the reference's rule: the name
    assert show("ip-adapter-faceid_sdxl [0a1b2c3d]")["visible"] is False and show(None)["visible"] is False
    values = {k: unit[k].value if k != "image" else None for k in VALUE_KEYS}
    values.update(enabled=True, pulid_mode="Extremely style")
    state, _ = unit.sync(*[values[k] for k in VALUE_KEYS])
    assert state.pulid_mode is PuLIDMode.STYLE
    assert _handler(blocks, unit["pulid_mode"], "change", output=unit.state) is unit.sync


def test_sync_on_recomputes_every_unit_and_chains(models, registry):
    demo = build_demo(models, preprocessors=registry, unit_count=2)
    panel = demo.controlnet_panel
    show = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "cn_demo_show_state")
    sync_all = _handler(demo, show, "click")
    values = [c.value if c is not u.widgets["image_value"] else None for u in panel.units for c in u.inputs]
    results = sync_all(*values)
    assert len(results) == 4 and all(isinstance(r, Unit) for r in results[::2])


@pytest.mark.parametrize("tab", ["spam", ""])
def test_bad_tab_is_refused(models, registry, tab):
    with pytest.raises(ValueError, match="tab must be one of"):
        _build(tab, 1, models=models, preprocessors=registry)


def test_blank_canvas_and_preview_as_input_set_image_and_state(models, registry, astronaut):
    blocks, panel = _build(unit_count=1, models=models, preprocessors=registry)
    unit = panel.units[0]
    create = _handler(blocks, unit["create_canvas"], "click")
    shown, stored, group = create(384, 256)
    assert shown is stored and shown.shape == (256, 384, 3) and (shown == 255).all() and group["visible"] is False
    use = _handler(blocks, unit["use_preview"], "click")
    shown, stored, module, message = use(None)
    assert "run the preprocessor first" in message and set(shown) == {"__type__"}
    edges = np.zeros_like(astronaut)
    shown, stored, module, _ = use(edges)
    assert shown is edges and stored is edges and module["value"] == "none"


def test_refresh_finds_new_models_of_the_checkpoint_family(registry, tmp_path):
    from ui_model_files import write_controlnet

    from lib_controlnet.models.registry import ModelRegistry

    folder = tmp_path / "models"
    write_controlnet(folder / "canny_first.safetensors", "sd1")
    registry_models = ModelRegistry([folder])
    blocks, panel = _build(unit_count=1, models=registry_models, preprocessors=registry,
                           checkpoint_family=lambda: "sd1")
    unit = panel.units[0]
    assert [c for c in unit["model"].choices if c != "None"] == registry_models.list_names()
    write_controlnet(folder / "canny_second.safetensors", "sd1")
    write_controlnet(folder / "canny_xl.safetensors", "sdxl")
    refresh = _handler(blocks, unit["refresh_models"], "click")
    update = refresh("Canny", "None")
    assert [c.split(" [")[0] for c in update["choices"]] == ["None", "canny_first", "canny_second"]
    assert update["value"] == "None"  # the current choice is kept
