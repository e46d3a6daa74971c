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

from ..samplers import sampler_names  # noqa: E402
from .encoding import png_base64  # noqa: E402
from .schemas import Img2ImgBody, Txt2ImgBody  # noqa: E402

TABS = ("txt2img", "img2img")
FIELDS = ("prompt", "negative_prompt", "steps", "sampler_name", "cfg_scale", "width", "height", "seed")
IMG2IMG_FIELDS = ("init_image", "mask", "denoising_strength")


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
    w["prompt"] = gr.Textbox(label="Prompt", lines=2, elem_id=f"{tab}_prompt")
    w["negative_prompt"] = gr.Textbox(label="Negative prompt", lines=1, elem_id=f"{tab}_neg_prompt")
    with gr.Row():
        w["steps"] = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id=f"{tab}_steps")
        w["sampler_name"] = gr.Dropdown(sampler_names(), value="Euler", label="Sampler", elem_id=f"{tab}_sampling")
        w["cfg_scale"] = gr.Slider(1, 30, value=7, step=0.5, label="CFG scale", elem_id=f"{tab}_cfg_scale")
    with gr.Row():
        w["width"] = gr.Slider(64, 2048, value=512, step=8, label="Width", elem_id=f"{tab}_width")
        w["height"] = gr.Slider(64, 2048, value=512, step=8, label="Height", elem_id=f"{tab}_height")
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
    inputs = [w[n] for n in names] + list(panel)

    def run(*values, progress=gr.Progress()):  # noqa: B008 - gradio's way to ask for a progress bar
        fields, states = dict(zip(names, values[:len(names)])), values[len(names):]
        return generate_for_page(service, tab, fields, states, progress)

    panel.sync_on(generate).then(fn=run, inputs=inputs, outputs=[gallery, info])
    interrupt.click(fn=lambda: service.queue.interrupt() and None, queue=False)


def generate_for_page(service, tab: str, fields: dict, states, progress=None):
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
