"""The ControlNet panel: an accordion with one tab per unit. Both hosts build it through `build_panel`.

A1111's Script returns the result from `ui(is_img2img)`; the standalone host puts it in its Blocks. Either
way the result is a list with one `gr.State` per unit slot, each holding the unit's `Unit` (or, while the
panel's values are invalid, the payload that `process()` rejects with the error the panel shows). Slots
beyond `unit_count` have no widgets: they hold a disabled `Unit` and exist so that API callers can send
more units than the UI shows (A1111 drops script arguments beyond a script's slots).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import gradio as gr

from lib_controlnet.models.registry import ModelRegistry
from lib_controlnet.preprocessors import Registry
from lib_controlnet.units.unit import Unit

from .elem_ids import panel_id, tabs_id, unit_name
from .tab_titles import style_sheet
from .unit_panel import UnitControls, build_unit

TITLE = "ControlNet"


class PanelStates(list):
    """The list of unit states (what the host's `ui()` returns), plus the built units for further wiring."""

    def __init__(self, states: Sequence[gr.State], units: Sequence[UnitControls]):
        super().__init__(states)
        self.units = list(units)

    def sync_on(self, trigger, event: str = "click"):
        """Recompute every unit's state when `trigger` fires (e.g. A1111's Generate button), so that a value
        changed a moment before the click is not missed (the reference's fix for #2875). Returns the gradio
        dependency, on which the caller can chain `.then(...)`."""
        units = self.units
        inputs = [component for unit in units for component in unit.inputs]
        outputs = [component for unit in units for component in (unit.state, unit.status)]
        counts = [len(unit.inputs) for unit in units]

        def sync_all(*values):
            results, start = [], 0
            for unit, count in zip(units, counts):
                results.extend(unit.sync(*values[start:start + count]))
                start += count
            return results

        return getattr(trigger, event)(fn=sync_all, inputs=inputs, outputs=outputs, queue=False,
                                       show_progress="hidden")


def build_panel(tab: str, unit_count: int, *, models: ModelRegistry, preprocessors: Registry,
                checkpoint_family: Callable[[], str | None] | None = None,
                send_dimensions_targets: Sequence | None = None, total_slots: int | None = None,
                open: bool = False, control_type_dropdown: bool = False,
                ignore_noninpaint_mask: Callable[[], bool] | None = None, title: str = TITLE) -> PanelStates:
    """Build the panel in the current gradio Blocks context.

    tab: "txt2img" or "img2img" (img2img units may use the init image; txt2img units have the hires option).
    unit_count: unit tabs (the control_net_unit_count setting).
    checkpoint_family: returns "sd1"/"sd2"/"sdxl" for the loaded checkpoint, or None when unknown; models of
        another family are left out of the model lists and flagged in a unit's status.
    send_dimensions_targets: the host's (width, height) components, for "send dimensions" and pixel-perfect
        previews; None hides the button.
    total_slots: unit slots returned, at least unit_count (defaults to unit_count).
    """
    if unit_count < 1:
        raise ValueError(f"unit_count must be at least 1, got {unit_count}")
    total = max(unit_count, total_slots or unit_count)
    if send_dimensions_targets is not None and len(send_dimensions_targets) != 2:
        raise ValueError("send_dimensions_targets must be the (width, height) components")
    options = dict(models=models, preprocessors=preprocessors, checkpoint_family=checkpoint_family,
                   size_inputs=send_dimensions_targets, control_type_dropdown=control_type_dropdown,
                   ignore_noninpaint_mask=ignore_noninpaint_mask)
    units: list[UnitControls] = []
    with gr.Group(elem_id=panel_id(tab)), gr.Accordion(title, open=open, elem_id="controlnet"):
        if unit_count == 1:
            units.append(build_unit(tab, 0, 1, **options))
        else:
            gr.HTML(style_sheet(tab, unit_count), elem_classes=["cnet-tab-marks"])
            with gr.Tabs(elem_id=tabs_id(tab)):
                for i in range(unit_count):
                    with gr.Tab(f"ControlNet Unit {i}", elem_id=f"{panel_id(tab)}_{unit_name(i, unit_count)}_tab",
                                elem_classes=["cnet-unit-tab"]):
                        units.append(build_unit(tab, i, unit_count, **options))
    extra = [gr.State(value=Unit()) for _ in range(total - unit_count)]
    return PanelStates([u.state for u in units] + extra, units)
