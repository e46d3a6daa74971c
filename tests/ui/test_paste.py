"""Pasting infotext into the panel: A1111's paste protocol replayed on a built panel, then the panel's own
events, until the unit states equal the units that wrote the infotext."""

from __future__ import annotations

import gradio as gr

from lib_controlnet.ui import build_panel
from lib_controlnet.ui.paste import PASTED_SLIDERS, paste_fields, paste_key, paste_outputs, paste_values
from lib_controlnet.ui.unit_values import VALUE_KEYS
from lib_controlnet.units.infotext import INFOTEXT_FIELDS, infotext_params, parse_parameters, quote
from lib_controlnet.units.unit import Unit


def _build(models, registry, unit_count=3):
    with gr.Blocks() as blocks:
        panel = build_panel("txt2img", unit_count, models=models, preprocessors=registry)
    return blocks, panel


def _handler(blocks, component, event, output):
    found = [fn.fn for dep, fn in zip(blocks.dependencies, blocks.fns)
             if component._id in dep["targets"] and dep["trigger"] == event and output._id in dep["outputs"]]
    assert len(found) == 1
    return found[0]


def _infotext(units) -> str:
    params = {"Steps": "20", "Sampler": "Euler a", **infotext_params(units), "Version": "v1.10.1"}
    return "a prompt\nNegative prompt: bad\n" + ", ".join(f"{k}: {quote(v)}" for k, v in params.items())


def _paste(blocks, panel, text, registry):
    """What A1111 does on paste, then the dropdown's change event where the module changed; returns each
    unit's widget values afterwards."""
    values = paste_values(parse_parameters(text), preprocessors=registry, unit_count=len(panel.units))
    fields = paste_fields(panel.units)
    outputs = paste_outputs(fields, values)
    shown = {id(c): c.value for c, _ in fields}
    for (component, _), update in zip(fields, outputs):
        if "value" in update:
            shown[id(component)] = update["value"]
    result = []
    for unit in panel.units:
        w = {k: shown.get(id(unit[k]), unit[k].value) for k in (*VALUE_KEYS[:3], *VALUE_KEYS[4:], PASTED_SLIDERS)}
        w["status"] = shown[id(unit.status)]
        if w["module"] != unit["module"].value:  # gradio fires the dropdown's change event after the paste
            on_module = _handler(blocks, unit["module"], "change", unit["threshold_a"])
            res, a, b, _, _, memory = on_module(w["module"], w["pixel_perfect"], w[PASTED_SLIDERS])
            w["processor_res"], w["threshold_a"], w["threshold_b"] = res["value"], a["value"], b["value"]
            w[PASTED_SLIDERS] = memory
        result.append(w)
    return values, result


def _state(unit_controls, widget_values):
    args = [None if k == "image" else widget_values[k] for k in VALUE_KEYS]
    state, status = unit_controls.sync(*args)
    return state


def test_pasted_units_come_back_with_every_field(models, registry):
    model = next(n for n in models.list_names() if n.startswith("canny_a"))
    written = [
        Unit.from_dict({"enabled": True, "module": "canny", "model": model, "weight": 0.6, "threshold_a": 50,
                        "threshold_b": 150, "processor_res": 384, "guidance_start": 0.1, "guidance_end": 0.8,
                        "control_mode": 2,
                        "resize_mode": "Resize and Fill", "pixel_perfect": True, "hr_option": "Low res only",
                        "union_control_type": "Depth"}),
        Unit(),
        Unit.from_dict({"enabled": True, "module": "lineart_standard", "model": model, "processor_res": 768,
                        "threshold_a": 0.5, "threshold_b": 0.5}),
    ]
    blocks, panel = _build(models, registry)
    values, shown = _paste(blocks, panel, _infotext(written), registry)
    assert values[paste_key(1, "enabled")] is False  # the image did not use unit 1
    for index in (0, 2):
        state = _state(panel.units[index], shown[index])
        assert state.enabled
        for field in (*INFOTEXT_FIELDS, "hr_option", "union_control_type"):
            assert getattr(state, field) == getattr(written[index], field), (index, field)
        assert shown[index]["status"].startswith("Pasted from infotext")
        assert shown[index][PASTED_SLIDERS] == ""  # used once, then forgotten
    assert not _state(panel.units[1], shown[1]).enabled


def test_slider_memory_only_serves_its_own_preprocessor(models, registry):
    blocks, panel = _build(models, registry, unit_count=1)
    unit = panel.units[0]
    on_module = _handler(blocks, unit["module"], "change", unit["threshold_a"])
    res, a, b, _, _, memory = on_module("canny", False, '{"module": "canny", "values": [640, 33, 66]}')
    assert (res["value"], a["value"], b["value"], memory) == (640, 33, 66, "")
    res, a, b, _, _, _ = on_module("canny", False, '{"module": "lineart_standard", "values": [640, 33, 66]}')
    assert (a["value"], b["value"]) == (100, 200)  # canny's own defaults


def test_broken_entry_is_shown_in_its_unit_and_others_still_paste(models, registry):
    blocks, panel = _build(models, registry)
    text = 'Steps: 20, ControlNet 0: "Module: canny, Weight: 9", ControlNet 1: "Module: canny, Weight: 0.5"'
    values, shown = _paste(blocks, panel, text, registry)
    assert "not pasted" in shown[0]["status"] and "weight" in shown[0]["status"]
    assert shown[0]["enabled"] is False and paste_key(0, "weight") not in values  # left as it was
    assert shown[1]["enabled"] is True and shown[1]["weight"] == 0.5


def test_infotext_without_controlnet_leaves_the_panel_alone(registry):
    params = parse_parameters("a cat\nSteps: 20, Sampler: Euler a, Seed: 1")
    assert params == {"Steps": "20", "Sampler": "Euler a", "Seed": "1"}
    assert paste_values(params, preprocessors=registry, unit_count=3) == {}


def test_more_units_than_the_panel_shows_is_said(models, registry):
    unit = Unit.from_dict({"enabled": True, "module": "canny"})
    text = _infotext([unit, unit, unit, unit])
    values = paste_values(parse_parameters(text), preprocessors=registry, unit_count=2)
    assert "units up to 3" in values[paste_key(1, "status")]
