"""The gradio page's Generate: the panel's unit states (Unit objects, or the payload an invalid panel holds)
through the same service as the API, with progress reported per step."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from lib_controlnet.unit import Unit
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
