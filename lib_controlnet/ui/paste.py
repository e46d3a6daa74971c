"""Pasting an image's infotext into the panel (A1111's "Read generation parameters" arrow, and the standalone
page's paste box).

A1111 parses the infotext into `params`, lets callbacks add keys (`on_infotext_pasted`), then sets every
registered `(component, key)` pair from `params[key]`. `paste_values` adds our keys,
`ControlNet <i> <widget>`, with the values the widgets show (`unit_values.panel_values`); `paste_fields`
lists the pairs for a built panel. Both hosts use these two; `paste_outputs` applies them the way A1111 does
(a value that is a gradio update dict, as the sliders' are, is passed on as it is).

Two things a plain "set every widget" would get wrong:
* Changing the Preprocessor dropdown resets its sliders to the preprocessor's defaults (its `.change` event
  fires after the paste), which would overwrite the pasted thresholds. The pasted slider values are therefore
  also put into a hidden `pasted_sliders` box that the dropdown's handler prefers for that preprocessor.
* Units the pasted image did not use are switched off, so that generating again reproduces it; an infotext
  without ControlNet entries (another tool's, or a plain prompt) leaves the panel untouched.
A broken entry is reported in that unit's status line (the reference logs a warning and pastes nothing).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from lib_controlnet.preprocessors import Registry
from lib_controlnet.units.infotext import UNIT_PREFIX, parse_infotext

from .sliders import slider_states
from .unit_checks import ERROR
from .unit_values import panel_values

# The widgets a paste sets, besides the status line and the hidden slider memory.
PASTE_WIDGETS = ("enabled", "module", "model", "weight", "guidance_start", "guidance_end", "processor_res",
                 "threshold_a", "threshold_b", "pixel_perfect", "control_mode", "resize_mode", "hr_option",
                 "union_control_type", "pulid_mode")
SLIDERS = ("processor_res", "threshold_a", "threshold_b")
PASTED_SLIDERS = "pasted_sliders"
STATUS = "status"


def paste_key(index: int, widget: str) -> str:
    """`ControlNet 1 weight`: the reference's paste keys (field names after the unit's number)."""
    return f"{UNIT_PREFIX} {index} {widget}"


def paste_values(params: Mapping[str, Any], *, preprocessors: Registry, unit_count: int) -> dict[str, Any]:
    """Our paste keys for the units in `params` (parsed, unquoted generation parameters)."""
    errors: dict[int, str] = {}
    units = parse_infotext(params, errors)
    if not units and not errors:
        return {}
    values: dict[str, Any] = {}
    for index in range(unit_count):
        if index in errors:
            values[paste_key(index, STATUS)] = f"{ERROR} not pasted: {errors[index]}"
            continue
        unit = units.get(index)
        if unit is None:
            values[paste_key(index, "enabled")] = False
            values[paste_key(index, STATUS)] = ""
            continue
        shown = panel_values(unit, preprocessors=preprocessors, tab="txt2img")
        values.update({paste_key(index, w): shown[w] for w in PASTE_WIDGETS})
        found = preprocessors.get(unit.module)
        if found is not None:  # the sliders' ranges and labels come with their values (see _slider_updates)
            values.update(_slider_updates(index, found, shown))
        values[paste_key(index, PASTED_SLIDERS)] = json.dumps(
            {"module": shown["module"], "values": [shown[s] for s in SLIDERS]})
        values[paste_key(index, STATUS)] = f"Pasted from infotext: {unit.module}"
    beyond = sorted(set(units) | set(errors))
    if beyond and beyond[-1] >= unit_count:
        note = f"{ERROR} the infotext has units up to {beyond[-1]}; this panel shows {unit_count}"
        values[paste_key(unit_count - 1, STATUS)] = note
    return values


def _slider_updates(index: int, preprocessor, shown: Mapping[str, Any]) -> dict[str, dict]:
    """Full slider updates (label, range, visibility and value) for the pasted preprocessor. A bare value would
    be clamped by the browser to the range the slider still has from the previous preprocessor (120 into 0-1
    shows as 1), and the dropdown's later update with the same value would not move the handle back."""
    states = slider_states(preprocessor, bool(shown["pixel_perfect"]))
    return {paste_key(index, name): {**state.update(), "value": shown[name]} for name, state in zip(SLIDERS, states)}


def paste_fields(units: Sequence) -> list[tuple[Any, str]]:
    """`(component, key)` pairs for a built panel's units (`PanelStates.units`), as A1111's `infotext_fields`."""
    fields = []
    for controls in units:
        for widget in (*PASTE_WIDGETS, PASTED_SLIDERS):
            fields.append((controls[widget], paste_key(controls.index, widget)))
        fields.append((controls.status, paste_key(controls.index, STATUS)))
    return fields


def remembered_sliders(pasted: str, module_label: str) -> list | None:
    """The pasted slider values when `pasted` (the hidden box) was written for this preprocessor."""
    if not pasted:
        return None
    try:
        memory = json.loads(pasted)
    except ValueError:
        return None
    if memory.get("module") != module_label:
        return None
    return list(memory.get("values") or []) or None


def paste_outputs(fields: Sequence[tuple[Any, str]], values: Mapping[str, Any]) -> list[dict]:
    """The outputs A1111's paste handler produces for `fields`: the value where `values` has the key, else no
    change (a gradio update dict each)."""
    import gradio as gr

    def output(value):
        if value is None:
            return gr.update()
        return value if isinstance(value, dict) else gr.update(value=value)  # dicts are gradio updates already

    return [output(values.get(key)) for _, key in fields]
