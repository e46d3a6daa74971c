"""The gradio page's Generate: the panel's unit states (Unit objects, or the payload an invalid panel holds)
through the same service as the API, with progress reported per step."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from lib_controlnet.units.unit import Unit
from standalone import DEMO_NOTICE
from standalone.server.gradio_page import generate_for_page
from tests.standalone_server.server_helpers import CONTROLNET, gradient, square

FIELDS = dict(prompt="a cat", negative_prompt="", steps=3, sampler_name="Euler", cfg_scale=7, width=64, height=64,
              seed=5)


class Progress:
    def __init__(self):
        self.calls = []

    def __call__(self, value, desc=None):
        self.calls.append(value)


def test_txt2img_with_panel_units_shows_images_then_maps(service):
    states = [Unit(enabled=True, module="canny", model=CONTROLNET, image=square()), Unit(), Unit()]
    progress = Progress()
    images, text = generate_for_page(service, "txt2img", FIELDS, states, progress)
    assert len(images) == 2 and images[0].size == (64, 64) and images[1].shape == (64, 64, 3)
    assert DEMO_NOTICE in text and 'ControlNet 0: "Module: canny' in text
    assert progress.calls == [(1, 3), (2, 3), (3, 3)]
    plain, _ = generate_for_page(service, "txt2img", FIELDS, [Unit(), Unit(), Unit()])
    assert len(plain) == 1 and not np.array_equal(np.asarray(plain[0]), np.asarray(images[0]))


def test_img2img_unit_reads_the_init_image(service):
    fields = dict(FIELDS, init_image=Image.fromarray(gradient()), mask=None, denoising_strength=0.5)
    images, text = generate_for_page(service, "img2img", fields, [Unit(enabled=True, module="invert",
                                                                       model=CONTROLNET)])
    assert len(images) == 2 and np.array_equal(images[1], 255 - gradient())
    assert "Denoising strength: 0.5" in text


def test_an_invalid_panel_state_is_refused_naming_the_unit(service):
    states = [Unit(), {"enabled": True, "module": "canny", "model": CONTROLNET, "weight": 5}]
    with pytest.raises(gr.Error, match=r"unit 1, field 'weight'"):
        generate_for_page(service, "txt2img", FIELDS, states)
    with pytest.raises(gr.Error, match="init image"):
        generate_for_page(service, "img2img", dict(FIELDS, init_image=None, mask=None, denoising_strength=0.5), [])


def _page_handler(blocks, name: str, elem_id: str):
    """The function named `name` wired to the component with `elem_id`."""
    component = next(b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == elem_id)
    found = [fn for dep, fn in zip(blocks.dependencies, blocks.fns)
             if component._id in dep["targets"] and fn.fn is not None and fn.fn.__name__ == name]
    assert len(found) == 1
    return found[0].fn


def test_generate_handler_gets_gradios_progress_and_an_own_task_id(service, monkeypatch):
    from gradio.helpers import special_args

    from standalone.server.gradio_page import PageSession, build_blocks

    blocks = build_blocks(service)
    run = _page_handler(blocks, "run", "txt2img_generate")
    _, progress_index, _ = special_args(run, inputs=[])
    assert progress_index == 0  # gradio sees the progress parameter, so the page's bar moves
    seen = []
    monkeypatch.setattr(service, "run", lambda body, **kw: seen.append(body.force_task_id) or (_ for _ in ()).throw(
        gr.Error("stop here")))
    page = PageSession()
    values = [FIELDS[k] for k in ("prompt", "negative_prompt", "steps", "sampler_name", "cfg_scale", "width",
                                  "height", "seed")]
    with pytest.raises(gr.Error):
        run(Progress(), page, *values, Unit(), Unit(), Unit())
    assert seen[0].startswith("task(page-") and page.task_id is None and page.count == 1


def test_read_parameters_fills_the_page_and_the_units(service):
    from standalone.server.gradio_page import build_blocks

    states = [Unit(), Unit(enabled=True, module="canny", model=CONTROLNET, image=square(), weight=0.7,
                       threshold_a=50, threshold_b=120, control_mode=2)]
    _, text = generate_for_page(service, "txt2img", dict(FIELDS, prompt="a cat\non two lines"), states + [Unit()])
    infotext = text.split("\n\n")[-1]
    blocks = build_blocks(service)
    read = _page_handler(blocks, "read", "txt2img_paste")
    outputs = read(infotext)
    dep = next(d for d, fn in zip(blocks.dependencies, blocks.fns) if fn.fn is read)
    by_id = {blocks.blocks[o].elem_id: u for o, u in zip(dep["outputs"], outputs) if blocks.blocks[o].elem_id}
    assert by_id["txt2img_prompt"]["value"] == "a cat\non two lines"
    assert by_id["txt2img_steps"]["value"] == 3 and by_id["txt2img_seed"]["value"] == 5
    unit_1 = "txt2img_controlnet_ControlNet-1_controlnet_"
    assert by_id[unit_1 + "enable_checkbox"]["value"] is True
    assert by_id[unit_1 + "control_weight_slider"]["value"] == 0.7
    assert by_id[unit_1 + "threshold_A_slider"]["value"] == 50
    assert by_id[unit_1 + "control_mode_radio"]["value"] == "ControlNet is more important"
    assert by_id["txt2img_controlnet_ControlNet-0_controlnet_enable_checkbox"]["value"] is False
