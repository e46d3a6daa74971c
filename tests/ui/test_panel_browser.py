"""The panel in a real browser: headless Debian Chromium driven by Playwright against the demo app.

Open the page, enable unit 0, upload a photo, pick the Canny type, run the preview and check the map is the
preprocessor's, switch the preprocessor and see the sliders follow, then read the units' states as API JSON.
Screenshots go to the test's tmp folder and, the final ones, to /tmp/ui_screens/. Skipped only when Chromium
cannot be launched.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from lib_controlnet.preprocessors import resolve_params, run_preprocessor
from lib_controlnet.ui.demo_app import SHOW_STATE_ID, build_demo, state_box_id
from tests.browser import choose, chromium_page, image_src, keep, markdown, shot

SCREENS = Path("/tmp/ui_screens")
UNIT = "txt2img_controlnet_ControlNet-0"


def _id(widget: str) -> str:
    return f"#{UNIT}_controlnet_{widget}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def demo_url(models, registry):
    demo = build_demo(models, preprocessors=registry, unit_count=3, checkpoint_family=lambda: "sd1")
    port = _free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                        show_error=True)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        demo.close()


@pytest.fixture
def page(demo_url):
    with chromium_page(demo_url) as page:
        yield page


def _state(page, module: str) -> dict:
    """Unit 0's state as the demo shows it, once it names `module` (the box keeps the previous one until then)."""
    page.click(f"#{SHOW_STATE_ID}")
    box = page.locator(f"#{state_box_id(0)} textarea")
    expect(box).to_have_value(re.compile(f'"module": "{re.escape(module)}"'))
    return json.loads(box.input_value())


def test_enable_upload_canny_preview_sliders_state(page, demo_url, tmp_path, models, registry, astronaut):
    photo = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(photo)
    canny_a = next(e.name for e in models.entries() if e.stem == "canny_a")
    shots = []

    # enable unit 0: its tab title is marked, the others' are not
    page.click(f"{_id('enable_checkbox')} input")
    mark = "el => getComputedStyle(el, '::after').content"
    tabs = page.locator("#txt2img_controlnet_tabs > .tab-nav > button")
    expect(tabs).to_have_count(3)
    page.wait_for_function(f"el => ({mark})(el).includes('✓')", arg=tabs.nth(0).element_handle())
    assert tabs.nth(1).evaluate(mark) in ("none", "normal")

    # upload: the status now asks for a model, not for an image
    page.set_input_files(f"#{UNIT}_input_image input[type=file]", str(photo))
    expect(markdown(page, _id("unit_status"))).to_contain_text("no ControlNet model selected")

    # control type Canny: canny and the SD1 canny model (the SDXL one is filtered out), canny's sliders
    page.locator(_id("type_filter_radio")).get_by_text("Canny", exact=True).click()
    expect(page.locator(f"{_id('preprocessor_dropdown')} input")).to_have_value("canny")
    expect(page.locator(f"{_id('model_dropdown')} input")).to_have_value(canny_a)
    expect(page.locator(_id("threshold_A_slider"))).to_contain_text("Low Threshold")
    expect(page.locator(_id("threshold_B_slider"))).to_contain_text("High Threshold")
    expect(markdown(page, _id("unit_status"))).to_contain_text("Ready:")

    # run the preprocessor: the preview shows canny's map of the photo
    page.click(_id("trigger_preprocessor"))
    expect(markdown(page, _id("preprocessor_status"))).to_contain_text("Preview:")
    expect(page.locator(f"#{UNIT}_generated_image img")).to_be_visible()
    canny = registry.get("canny")
    expected = run_preprocessor(canny, astronaut, resolve_params(canny, 512, 100, 200)).display
    assert np.array_equal(image_src(page, demo_url, f"#{UNIT}_generated_image"), expected)
    shots.append(shot(page, tmp_path, "1_canny_preview"))

    # change the preprocessor: the sliders take scribble_xdog's label, range and visibility
    page.locator(_id("type_filter_radio")).get_by_text("All", exact=True).click()
    choose(page, _id("preprocessor_dropdown"), "scribble_xdog")
    slider_a = page.locator(_id("threshold_A_slider"))
    expect(slider_a).to_contain_text("XDoG Threshold")
    expect(slider_a.locator("input[type=range]")).to_have_attribute("max", "64")
    expect(slider_a.locator("input[type=number]")).to_have_value("32")
    expect(page.locator(_id("threshold_B_slider"))).to_be_hidden()
    shots.append(shot(page, tmp_path, "2_xdog_sliders"))

    # the state is the unit the API would accept
    state = _state(page, "scribble_xdog")
    assert (state["enabled"], state["module"], state["model"]) == (True, "scribble_xdog", canny_a)
    assert (state["processor_res"], state["threshold_a"], state["threshold_b"]) == (512, 32.0, 0.5)
    assert state["image"] == "<image 512x512x3, sent as base64 PNG>" and state["is_ui"] is True
    shots.append(shot(page, tmp_path, "3_state"))

    # use the canny map as the input: preprocessor none, the state's image is the map
    page.click(_id("preview_as_input_button"))
    expect(page.locator(f"{_id('preprocessor_dropdown')} input")).to_have_value("none")
    state = _state(page, "none")
    assert state["module"] == "none" and state["image"] == "<image 512x512x3, sent as base64 PNG>"
    shots.append(shot(page, tmp_path, "4_map_as_input"))

    keep(shots, SCREENS)
