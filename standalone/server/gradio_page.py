"""The page at `/`: txt2img and img2img tabs with A1111's main fields, the ControlNet panel (lib_controlnet.ui,
the same builder A1111's Script uses), a progress bar and the result gallery, as a gradio 3.41 Blocks app that
`app.create_app` mounts. Generations go through `GenerationService.run`, so they queue, report progress and
refuse bad units exactly as the API does; the panel's unit states are parsed like API units.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from lib_controlnet.errors import ControlNetError  # noqa: E402
from lib_controlnet.ui import build_panel  # noqa: E402
from lib_controlnet.ui.paste import paste_fields, paste_outputs, paste_values  # noqa: E402
from lib_controlnet.units.infotext import parse_parameters  # noqa: E402

from ..samplers import sampler_names  # noqa: E402
from .encoding import png_base64  # noqa: E402
from .schemas import Img2ImgBody, Txt2ImgBody  # noqa: E402

TABS = ("txt2img", "img2img")
FIELDS = ("prompt", "negative_prompt", "steps", "sampler_name", "cfg_scale", "width", "height", "seed")
IMG2IMG_FIELDS = ("init_image", "mask", "denoising_strength")
# infotext keys -> page fields, for "Read parameters"
PASTED_FIELDS = {"Steps": "steps", "Sampler": "sampler_name", "CFG scale": "cfg_scale", "Seed": "seed"}


class PageSession:
    """Per browser session (a gr.State value): the task id of this page's generation, so that its Interrupt
    button stops its own request, also while that request still waits behind others in the queue."""

    task_id: str | None = None
    count: int = 0


def build_blocks(service) -> gr.Blocks:
    with gr.Blocks(title="ControlNet standalone", analytics_enabled=False) as blocks:
        gr.Markdown(f"## ControlNet standalone &middot; checkpoint `{service.checkpoint_title()}` &middot; "
                    "API: [/docs](/docs) &middot; [plain page](/simple)")
        if service.notice:
            gr.Markdown(f"**{service.notice}**", elem_id="demo_notice")
        for tab in TABS:
            with gr.Tab(tab, elem_id=f"tab_{tab}"):
                _build_tab(tab, service)
    return blocks.queue(concurrency_count=4, api_open=False)


def _build_tab(tab: str, service) -> None:
    w = {}
    with gr.Accordion("Paste generation parameters", open=False):
        paste_text = gr.Textbox(label="Infotext (an image's parameters)", lines=3, elem_id=f"{tab}_paste_text")
        paste = gr.Button("Read parameters", size="sm", elem_id=f"{tab}_paste")
    w["prompt"] = gr.Textbox(label="Prompt", lines=2, elem_id=f"{tab}_prompt")
    w["negative_prompt"] = gr.Textbox(label="Negative prompt", lines=1, elem_id=f"{tab}_neg_prompt")
    with gr.Row():
        w["steps"] = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id=f"{tab}_steps")
        w["sampler_name"] = gr.Dropdown(sampler_names(), value="Euler", label="Sampler", elem_id=f"{tab}_sampling")
        w["cfg_scale"] = gr.Slider(1, 30, value=7, step=0.5, label="CFG scale", elem_id=f"{tab}_cfg_scale")
    with gr.Row():
        size = service.checkpoint.model.default_size  # the checkpoint's native size: 1024 for SDXL
        w["width"] = gr.Slider(64, 2048, value=size, step=8, label="Width", elem_id=f"{tab}_width")
        w["height"] = gr.Slider(64, 2048, value=size, step=8, label="Height", elem_id=f"{tab}_height")
        w["seed"] = gr.Number(value=-1, precision=0, label="Seed (-1: random)", elem_id=f"{tab}_seed")
    if tab == "img2img":
        with gr.Row():
            w["init_image"] = gr.Image(label="Init image", type="pil", elem_id="img2img_image")
            w["mask"] = gr.Image(label="Inpaint mask (white = repaint; optional)", type="pil",
                                 elem_id="img2img_mask")
        w["denoising_strength"] = gr.Slider(0, 1, value=0.75, step=0.01, label="Denoising strength",
                                            elem_id="img2img_denoising_strength")
    model = service.checkpoint.model
    panel = build_panel(tab, service.unit_count(), models=service.models, preprocessors=service.preprocessors,
                        checkpoint_family=lambda: model.family, send_dimensions_targets=(w["width"], w["height"]),
                        ignore_noninpaint_mask=lambda: service.config.option("controlnet_ignore_noninpaint_mask"))
    with gr.Row():
        generate = gr.Button("Generate", variant="primary", elem_id=f"{tab}_generate")
        interrupt = gr.Button("Interrupt", elem_id=f"{tab}_interrupt")
    gallery = gr.Gallery(label="Images, then detected maps", elem_id=f"{tab}_gallery", columns=4)
    info = gr.Textbox(label="Generation info", lines=6, interactive=False, elem_id=f"{tab}_info")

    names = FIELDS + (IMG2IMG_FIELDS if tab == "img2img" else ())
    session = gr.State(value=PageSession())
    inputs = [session] + [w[n] for n in names] + list(panel)

    # gradio finds gr.Progress only among the positional parameters before *values
    def run(progress=gr.Progress(), page=None, *values):  # noqa: B008 - gradio's way to ask for a progress bar
        fields, states = dict(zip(names, values[:len(names)])), values[len(names):]
        page.count += 1
        page.task_id = f"task(page-{id(page):x}-{page.count})"
        try:
            return generate_for_page(service, tab, fields, states, progress, task_id=page.task_id)
        finally:
            page.task_id = None

    def stop(page):
        if page.task_id is not None:
            service.queue.interrupt(page.task_id)

    panel.sync_on(generate).then(fn=run, inputs=inputs, outputs=[gallery, info])
    interrupt.click(fn=stop, inputs=[session], queue=False)
    _wire_paste(paste, paste_text, w, panel, service)


def _wire_paste(button, text, w: dict, panel, service) -> None:
    """"Read parameters": the prompt, the main fields and every ControlNet unit from an image's infotext."""
    cn_fields = paste_fields(panel.units)
    page_fields = [(w["prompt"], "prompt"), (w["negative_prompt"], "negative_prompt"),
                   *((w[name], name) for name in PASTED_FIELDS.values()),
                   (w["width"], "width"), (w["height"], "height")]

    def read(infotext):
        params = parse_parameters(infotext or "")
        values = paste_values(params, preprocessors=service.preprocessors, unit_count=len(panel.units))
        values.update(_page_values(infotext or "", params))
        return paste_outputs(page_fields + cn_fields, values)

    button.click(fn=read, inputs=[text], outputs=[c for c, _ in page_fields + cn_fields], queue=False)


def _page_values(infotext: str, params: dict) -> dict:
    """The page's own fields from an infotext: prompt lines, `Negative prompt:`, and the parameters line."""
    lines = infotext.strip().split("\n")  # as A1111 (and parse_parameters): "\n" only
    if len(lines) < 2 or not params:
        return {}
    text_lines = lines[:-1]
    negative_at = next((i for i, line in enumerate(text_lines) if line.startswith("Negative prompt:")), None)
    prompt = text_lines if negative_at is None else text_lines[:negative_at]
    values = {"prompt": "\n".join(prompt)}
    if negative_at is not None:
        negative = [text_lines[negative_at][len("Negative prompt:"):].strip(), *text_lines[negative_at + 1:]]
        values["negative_prompt"] = "\n".join(negative)
    for key, name in PASTED_FIELDS.items():
        if key in params:
            values[name] = params[key]
    width, _, height = params.get("Size", "").partition("x")
    if width.isdigit() and height.isdigit():
        values["width"], values["height"] = int(width), int(height)
    for name in ("steps", "seed"):
        if name in values:
            values[name] = int(float(values[name]))
    if "cfg_scale" in values:
        values["cfg_scale"] = float(values["cfg_scale"])
    return values


def generate_for_page(service, tab: str, fields: dict, states, progress=None, task_id: str | None = None):
    """(gallery images, info text) for the page's values; errors become gradio's error popup."""
    values = {k: v for k, v in fields.items() if k not in IMG2IMG_FIELDS}
    values["seed"] = int(values["seed"] if values["seed"] is not None else -1)
    values["steps"], values["width"], values["height"] = (int(values[k]) for k in ("steps", "width", "height"))
    if tab == "img2img":
        if fields.get("init_image") is None:
            raise gr.Error("img2img needs an init image")
        body = Img2ImgBody(**values, init_images=[png_base64(fields["init_image"].convert("RGB"))],
                           mask=png_base64(fields["mask"]) if fields.get("mask") is not None else None,
                           denoising_strength=fields["denoising_strength"], inpainting_fill=1,
                           inpaint_full_res=False)
    else:
        body = Txt2ImgBody(**values)
    body.force_task_id = task_id

    def report(step):
        if progress is not None:
            progress((step.step + step.batch * step.steps, step.steps * step.batches), desc="Sampling")

    try:
        outcome = service.run(body, units=list(states), on_progress=report)
    except ControlNetError as exc:
        raise gr.Error(exc.describe()) from None
    images = list(outcome.result.images) + list(outcome.maps)
    text = "\n\n".join([*outcome.warnings, *outcome.result.infotexts])
    return images, text
