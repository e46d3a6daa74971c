"""One unit's widgets and events. `build_unit` is called inside the panel's tab for the unit.

Data flow: every widget change recomputes the unit (`unit_values.state_value`) into the unit's `gr.State`
and its status line (`unit_checks`). The image travels to the server once per change and is kept in a
server-side state, so moving a slider does not re-upload it. Widgets whose change updates other widgets
(preprocessor -> sliders, control type -> dropdowns, refresh -> model list) recompute the unit after those
updates (`.then`), so the state never mixes old and new values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from lib_controlnet.api.info import union_model_names
from lib_controlnet.enums import ControlMode, HiResFixOption, PuLIDMode, ResizeMode, UnionControlType
from lib_controlnet.models.registry import NO_MODEL, ModelRegistry
from lib_controlnet.preprocessors import Registry

from . import compat
from .canvas import CANVAS_DEFAULT, CANVAS_MAX, CANVAS_MIN, CANVAS_STEP, blank_canvas, image_size
from .control_type_filter import ALL, keep_or_default, models_for_family, type_choices, type_names
from .elem_ids import UnitIds
from .paste import PASTED_SLIDERS, remembered_sliders
from .preview import run_preview
from .sliders import resolution_visibility, slider_states, slider_updates
from .tab_titles import enabled_js
from .unit_checks import ERROR, status_markdown, unit_problems
from .unit_values import VALUE_KEYS, state_value

FamilyFn = Callable[[], "str | None"]
# Quick events show no progress overlay: an overlay changes the layout, the sketch canvas observes its size
# and re-sends the image on every resize, which would trigger the next sync - a loop.
QUIET = "hidden"
IMAGE_HEIGHT = 320  # input and preview side by side at one height


@dataclass
class UnitControls:
    """A built unit: its state (what `process()` gets), its status element, and every widget by name."""

    tab: str
    index: int
    state: gr.State
    status: gr.Markdown
    widgets: dict[str, Any] = field(default_factory=dict)
    sync: Callable[..., tuple] | None = None  # (*values) -> (state value, status markdown)
    inputs: list = field(default_factory=list)  # the components `sync` reads, in VALUE_KEYS order

    def __getitem__(self, name: str):
        return self.widgets[name]


class _Context:
    def __init__(self, tab, models, preprocessors, checkpoint_family, ignore_noninpaint_mask):
        self.tab = tab
        self.models: ModelRegistry = models
        self.preprocessors: Registry = preprocessors
        self.family: FamilyFn = checkpoint_family or (lambda: None)
        self.ignore_noninpaint_mask: Callable[[], bool] = ignore_noninpaint_mask or (lambda: False)

    def model_names(self, refresh: bool = False) -> list[str]:
        return models_for_family(self.models, self.family(), refresh=refresh)

    def union_models(self) -> set[str]:
        return union_model_names(self.models)


def build_unit(tab: str, index: int, unit_count: int, *, models: ModelRegistry, preprocessors: Registry,
               checkpoint_family: FamilyFn | None = None, size_inputs: Sequence | None = None,
               control_type_dropdown: bool = False,
               ignore_noninpaint_mask: Callable[[], bool] | None = None) -> UnitControls:
    """Build unit `index`'s widgets in the current gradio layout context and wire their events.

    `size_inputs` is the host's (width, height) components: "send dimensions" writes them and Pixel Perfect
    previews read them; without them the button is hidden and previews use the image's own size.
    """
    ctx = _Context(tab, models, preprocessors, checkpoint_family, ignore_noninpaint_mask)
    ids = UnitIds(tab, index, unit_count)
    is_img2img = tab == "img2img"
    none = preprocessors.get("none")
    if none is None:
        raise ValueError("the preprocessor registry has no 'none' module")
    start_choices = type_choices(ALL, preprocessors, ctx.model_names())
    res_state, a_state, b_state = slider_states(none)
    w: dict[str, Any] = {}

    # --- control image, preview, canvas -----------------------------------------------------------------
    with gr.Group(visible=not is_img2img) as w["image_group"]:
        with gr.Row(equal_height=True):
            with gr.Column():
                w["image"] = compat.mask_image(label="Control image (draw to mask or scribble)",
                                               elem_id=ids.image("input_image"), brush_radius=20,
                                               height=IMAGE_HEIGHT)
            with gr.Column(visible=False) as w["preview_column"]:
                w["preview"] = compat.plain_image(label="Preprocessor Preview", elem_id=ids.image("generated_image"),
                                                  height=IMAGE_HEIGHT)
                w["use_preview"] = gr.Button("Use as input", size="sm",
                                             elem_id=ids.control("preview_as_input_button"))
        with gr.Row():
            w["open_canvas"] = gr.Button("New blank canvas", size="sm",
                                         elem_id=ids.control("open_new_canvas_button"))
            w["send_dimensions"] = gr.Button("Send dimensions to generation", size="sm",
                                             visible=size_inputs is not None,
                                             elem_id=ids.control("send_dimen_button"))
        with gr.Group(visible=False) as w["canvas_group"]:
            with gr.Row():
                w["canvas_width"] = gr.Slider(label="New Canvas Width", minimum=CANVAS_MIN, maximum=CANVAS_MAX,
                                              step=CANVAS_STEP, value=CANVAS_DEFAULT,
                                              elem_id=ids.control("canvas_width"))
                w["canvas_height"] = gr.Slider(label="New Canvas Height", minimum=CANVAS_MIN, maximum=CANVAS_MAX,
                                               step=CANVAS_STEP, value=CANVAS_DEFAULT,
                                               elem_id=ids.control("canvas_height"))
            with gr.Row():
                w["create_canvas"] = gr.Button("Create New Canvas", elem_id=ids.control("canvas_create_button"))
                w["cancel_canvas"] = gr.Button("Cancel", elem_id=ids.control("canvas_cancel_button"))

    # --- switches -----------------------------------------------------------------------------------------
    with gr.Row():
        w["enabled"] = gr.Checkbox(label="Enable", value=False, elem_id=ids.control("enable_checkbox"))
        w["low_vram"] = gr.Checkbox(label="Low VRAM", value=False, elem_id=ids.control("low_vram_checkbox"))
        w["pixel_perfect"] = gr.Checkbox(label="Pixel Perfect", value=False,
                                         elem_id=ids.control("pixel_perfect_checkbox"))
        w["allow_preview"] = gr.Checkbox(label="Allow Preview", value=False,
                                         elem_id=ids.control("preprocessor_preview_checkbox"))
    with gr.Row(visible=is_img2img):
        w["upload_independent"] = gr.Checkbox(label="Upload independent control image", value=False,
                                              visible=is_img2img, elem_id=ids.control("same_img2img_checkbox"))
        w["inpaint_crop_input_image"] = gr.Checkbox(label="Crop input image based on A1111 mask", value=True,
                                                    visible=is_img2img,
                                                    elem_id=ids.control("crop_input_image_checkbox"))

    # --- control type, preprocessor, model ----------------------------------------------------------------
    type_widget = gr.Dropdown if control_type_dropdown else gr.Radio
    w["control_type"] = type_widget(label="Control Type", choices=type_names(preprocessors), value=ALL,
                                    elem_id=ids.control("type_filter_radio"))
    # the union task the Control Type picks (the reference's hidden field): pasted from infotext, sent to the API
    w["union_control_type"] = gr.Textbox(value=UnionControlType.UNKNOWN.value, visible=False,
                                         elem_id=ids.control("union_control_type"))
    with gr.Row():
        with gr.Column(scale=1, min_width=240):
            w["module"] = gr.Dropdown(label="Preprocessor", choices=start_choices.modules, value=none.label,
                                      elem_id=ids.control("preprocessor_dropdown"))
            w["run_preprocessor"] = gr.Button("Run preprocessor", size="sm",
                                              elem_id=ids.control("trigger_preprocessor"))
        with gr.Column(scale=1, min_width=240):
            w["model"] = gr.Dropdown(label="Model", choices=start_choices.models, value=NO_MODEL,
                                     elem_id=ids.control("model_dropdown"))
            w["refresh_models"] = gr.Button("Refresh models", size="sm", elem_id=ids.control("refresh_models"))
    w["preview_message"] = gr.Markdown("", elem_id=ids.control("preprocessor_status"))
    status = gr.Markdown("", elem_id=ids.control("unit_status"))

    # --- numbers and modes -------------------------------------------------------------------------------
    with gr.Row():
        w["weight"] = gr.Slider(label="Control Weight", minimum=0.0, maximum=2.0, step=0.05, value=1.0,
                                elem_id=ids.control("control_weight_slider"))
        w["guidance_start"] = gr.Slider(label="Starting Control Step", minimum=0.0, maximum=1.0, step=0.01,
                                        value=0.0, elem_id=ids.control("start_control_step_slider"))
        w["guidance_end"] = gr.Slider(label="Ending Control Step", minimum=0.0, maximum=1.0, step=0.01,
                                      value=1.0, elem_id=ids.control("ending_control_step_slider"))
    with gr.Row():
        w["processor_res"] = _slider(res_state, ids.control("preprocessor_resolution_slider"))
        w["threshold_a"] = _slider(a_state, ids.control("threshold_A_slider"))
        w["threshold_b"] = _slider(b_state, ids.control("threshold_B_slider"))
    w["control_mode"] = gr.Radio(label="Control Mode", choices=[m.value for m in ControlMode],
                                 value=ControlMode.BALANCED.value, visible=none.show_control_mode,
                                 elem_id=ids.control("control_mode_radio"))
    w["resize_mode"] = gr.Radio(label="Resize Mode", choices=[m.value for m in ResizeMode],
                                value=ResizeMode.INNER_FIT.value, elem_id=ids.control("resize_mode_radio"))
    w["hr_option"] = gr.Radio(label="Hires-Fix Option", choices=[m.value for m in HiResFixOption],
                              value=HiResFixOption.BOTH.value, visible=not is_img2img,
                              elem_id=ids.control("hr_option_radio"))
    w["pulid_mode"] = gr.Radio(label="PuLID Mode", choices=[m.value for m in PuLIDMode],
                               value=PuLIDMode.FIDELITY.value, visible=False, elem_id=ids.control("pulid_mode_radio"))

    # --- server-side state --------------------------------------------------------------------------------
    w["image_value"] = gr.State(value=None)  # the image widget's last value, kept on the server
    w["last_map"] = gr.State(value=None)  # the last preview map, for "use as input"
    # slider values pasted from infotext, which the preprocessor's change event must not reset (see paste.py);
    # a hidden Textbox rather than a State because A1111's paste can only set components with a value type
    w[PASTED_SLIDERS] = gr.Textbox(value="", visible=False, elem_id=ids.control("pasted_sliders"))
    initial_values = {key: _initial(w, key) for key in VALUE_KEYS}
    initial_unit, _ = state_value(initial_values, preprocessors=preprocessors, tab=tab, index=index)
    state = gr.State(value=initial_unit)

    controls = UnitControls(tab=tab, index=index, state=state, status=status, widgets=w)
    controls.inputs = [w["image_value"] if key == "image" else w[key] for key in VALUE_KEYS]
    controls.sync = _sync_function(ctx, index)
    _wire(controls, ctx, size_inputs, none)
    return controls


def shows_pulid_mode(model) -> bool:
    return isinstance(model, str) and "pulid" in model.lower()


def model_label(preprocessor) -> str:
    """The model dropdown says when the preprocessor needs no model (reference_*: model "None" is fine)."""
    if preprocessor is not None and preprocessor.model_free:
        return f"Model (not needed: {preprocessor.label} uses none)"
    return "Model"


def _slider(state, elem_id: str) -> gr.Slider:
    return gr.Slider(label=state.label, value=state.value, minimum=state.minimum, maximum=state.maximum,
                     step=state.step, visible=state.visible, elem_id=elem_id)


def _initial(w: dict, key: str):
    return None if key == "image" else w[key].value


def _sync_function(ctx: _Context, index: int):
    def sync(*values):
        state, error = state_value(dict(zip(VALUE_KEYS, values)), preprocessors=ctx.preprocessors, tab=ctx.tab,
                                   index=index)
        if error is not None:
            return state, status_markdown(None, [], error)
        problems = unit_problems(state, tab=ctx.tab, models=ctx.models, preprocessors=ctx.preprocessors,
                                 checkpoint_family=ctx.family)
        return state, status_markdown(state, problems)

    return sync


def _wire(c: UnitControls, ctx: _Context, size_inputs, none) -> None:
    w = c.widgets
    sync_args = dict(fn=c.sync, inputs=c.inputs, outputs=[c.state, c.status], queue=False, show_progress=QUIET)

    # plain values: recompute the unit
    for key in ("enabled", "low_vram", "model", "weight", "guidance_start", "guidance_end", "processor_res",
                "threshold_a", "threshold_b", "control_mode", "resize_mode", "hr_option",
                "inpaint_crop_input_image", "union_control_type", "pulid_mode"):
        w[key].change(**sync_args)

    # the PuLID mode radio is for PuLID models (the reference's rule: the model's name says "pulid")
    w["model"].change(fn=lambda model: gr.update(visible=shows_pulid_mode(model)), inputs=[w["model"]],
                      outputs=[w["pulid_mode"]], queue=False, show_progress=QUIET)

    # the image: keep it on the server, then recompute
    for event in compat.image_value_events(w["image"]):
        event(fn=lambda value: value, inputs=[w["image"]], outputs=[w["image_value"]], queue=False,
              show_progress=QUIET).then(**sync_args)

    # enabled units are marked in the tab bar
    w["enabled"].change(fn=None, inputs=[w["enabled"]], outputs=[], **compat.js_kwargs(enabled_js(c.tab, c.index)))

    # preprocessor: its sliders, control-mode visibility and whether it needs a model, then the unit
    def on_module(module, pixel_perfect, pasted=""):
        preprocessor = ctx.preprocessors.get(module)
        mode = gr.update() if preprocessor is None else gr.update(visible=preprocessor.show_control_mode)
        sliders = slider_updates(preprocessor, pixel_perfect)
        kept = remembered_sliders(pasted, module)
        if kept is not None and len(kept) == len(sliders):
            sliders = tuple({**update, "value": value} for update, value in zip(sliders, kept))
        return (*sliders, mode, gr.update(label=model_label(preprocessor)), "")

    w["module"].change(fn=on_module, inputs=[w["module"], w["pixel_perfect"], w[PASTED_SLIDERS]],
                       outputs=[w["processor_res"], w["threshold_a"], w["threshold_b"], w["control_mode"],
                                w["model"], w[PASTED_SLIDERS]],
                       queue=False, show_progress=QUIET).then(**sync_args)
    w["pixel_perfect"].change(fn=lambda module, on: resolution_visibility(ctx.preprocessors.get(module), on),
                              inputs=[w["module"], w["pixel_perfect"]], outputs=[w["processor_res"]],
                              queue=False, show_progress=QUIET).then(**sync_args)

    # control type: narrow both dropdowns (by the checkpoint's family too); the sliders follow the new
    # preprocessor in the same response, so no recomputation sees the new module with the old sliders
    def on_type(control_type, module, model, pixel_perfect):
        choices = type_choices(control_type, ctx.preprocessors, ctx.model_names(), ctx.union_models())
        if control_type == ALL:
            module = keep_or_default(module, choices.modules, choices.default_module)
            model = keep_or_default(model, choices.models, choices.default_model)
        else:  # the reference's behaviour: picking a type picks its usual preprocessor and model
            module = choices.default_module
            # no model is named for the type: the one already chosen stays (else the family's first)
            model = (keep_or_default(model, choices.models[1:], choices.default_model) if choices.every_model
                     else choices.default_model)
        return (gr.update(choices=choices.modules, value=module),
                gr.update(choices=choices.models, value=model, label=model_label(ctx.preprocessors.get(module))),
                *on_module(module, pixel_perfect)[:-2], UnionControlType.from_tag(control_type).value)

    w["control_type"].change(fn=on_type, inputs=[w["control_type"], w["module"], w["model"], w["pixel_perfect"]],
                             outputs=[w["module"], w["model"], w["processor_res"], w["threshold_a"],
                                      w["threshold_b"], w["control_mode"], w["union_control_type"]],
                             queue=False, show_progress=QUIET).then(**sync_args)

    def on_refresh(control_type, model):
        choices = type_choices(control_type, ctx.preprocessors, ctx.model_names(refresh=True), ctx.union_models())
        return gr.update(choices=choices.models, value=keep_or_default(model, choices.models, choices.default_model))

    w["refresh_models"].click(fn=on_refresh, inputs=[w["control_type"], w["model"]], outputs=[w["model"]],
                              queue=False, show_progress=QUIET).then(**sync_args)

    # img2img: the unit's own image, or A1111's init image
    w["upload_independent"].change(fn=lambda on: gr.update(visible=bool(on)), inputs=[w["upload_independent"]],
                                   outputs=[w["image_group"]], queue=False, show_progress=QUIET).then(**sync_args)

    # preview
    w["allow_preview"].change(fn=lambda on: gr.update(visible=bool(on)), inputs=[w["allow_preview"]],
                              outputs=[w["preview_column"]], queue=False, show_progress=QUIET)
    _wire_preview(c, ctx, size_inputs)

    def use_preview(last_map):
        if last_map is None:
            return gr.update(), gr.update(), gr.update(), f"{ERROR} run the preprocessor first"
        # the map is already processed: feed it through unchanged
        return (last_map, last_map, gr.update(value=none.label),
                "Preview map is now the control image (preprocessor: none)")

    # a value set by the server fires no image event: the handlers store it in image_value themselves
    w["use_preview"].click(fn=use_preview, inputs=[w["last_map"]],
                           outputs=[w["image"], w["image_value"], w["module"], w["preview_message"]],
                           queue=False, show_progress=QUIET).then(**sync_args)

    # blank canvas
    w["open_canvas"].click(fn=lambda: gr.update(visible=True), outputs=[w["canvas_group"]], queue=False,
                           show_progress=QUIET)
    w["cancel_canvas"].click(fn=lambda: gr.update(visible=False), outputs=[w["canvas_group"]], queue=False,
                             show_progress=QUIET)

    def create_canvas(width, height):
        canvas = blank_canvas(width, height)
        return canvas, canvas, gr.update(visible=False)

    w["create_canvas"].click(fn=create_canvas, inputs=[w["canvas_width"], w["canvas_height"]],
                             outputs=[w["image"], w["image_value"], w["canvas_group"]], queue=False,
                             show_progress=QUIET).then(**sync_args)

    # send dimensions
    if size_inputs is not None:
        def send_dimensions(image_value):
            size = image_size(image_value)
            if size is None:
                return gr.update(), gr.update(), f"{ERROR} no control image to take the size from"
            return size[0], size[1], f"Generation size set to {size[0]}×{size[1]}"

        w["send_dimensions"].click(fn=send_dimensions, inputs=[w["image_value"]],
                                   outputs=[*size_inputs, w["preview_message"]], queue=False, show_progress=QUIET)


def _wire_preview(c: UnitControls, ctx: _Context, size_inputs) -> None:
    w = c.widgets
    inputs = [w["image_value"], w["module"], w["processor_res"], w["threshold_a"], w["threshold_b"],
              w["pixel_perfect"], w["resize_mode"], *(size_inputs or ())]

    # gradio finds Progress by a positional default: it must come before the variable arguments
    def preview(progress=gr.Progress(), *values):  # noqa: B008 - gradio's documented way to ask for progress
        image_value, module, res, a, b, pixel_perfect, resize_mode, *size = values
        result = run_preview(image_value, module, res, a, b, preprocessors=ctx.preprocessors,
                             pixel_perfect=pixel_perfect, resize_mode=resize_mode,
                             target_size=(int(size[0]), int(size[1])) if len(size) == 2 else None,
                             ignore_noninpaint_mask=ctx.ignore_noninpaint_mask(),
                             report=lambda fraction, text: progress(fraction, desc=text))
        if not result.ok:
            return gr.update(), gr.update(), gr.update(), gr.update(), result.message
        return result.display, result.display, gr.update(visible=True), True, result.message

    w["run_preprocessor"].click(fn=preview, inputs=inputs,
                                outputs=[w["preview"], w["last_map"], w["preview_column"], w["allow_preview"],
                                         w["preview_message"]])
