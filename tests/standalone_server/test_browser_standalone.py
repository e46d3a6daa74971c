"""The standalone server's gradio page in a real browser: headless Debian Chromium driven by Playwright.

On the txt2img tab: see the demo-model notice, open the ControlNet panel on unit 1, enable it, upload a photo,
pick Canny and run the preview (the map is the preprocessor's), switch the preprocessor and see the sliders
follow, generate 64x64 in 3 steps (image and detected map in the gallery, the unit in the info text), then
change the unit and paste the infotext back with "Read parameters": the unit comes back - thresholds included,
although the pasted preprocessor differs from the selected one - and generating again gives the same image.
Screenshots go to the test's tmp folder and to /tmp/ui_screens_standalone/. Skipped only when Chromium cannot
be launched.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image
from playwright.sync_api import expect

from lib_controlnet.enums import ResizeMode
from lib_controlnet.preprocessors import resolve_params, run_preprocessor
from lib_controlnet.ui.elem_ids import UnitIds, tabs_id
from lib_controlnet.units.hint_size import fit_detected_map
from standalone import DEMO_NOTICE
from tests.browser import choose, chromium_page, image_src, keep, markdown, shot
from tests.standalone_server.server_helpers import CONTROLNET

SCREENS = Path("/tmp/ui_screens_standalone")
TAB = "txt2img"
UNIT = 1
GENERATE_MS = 120_000  # a 64x64, 3-step generation on a busy 2-core machine, with the first model load
SEED = "1234"


@pytest.fixture
def page(base_url):
    with chromium_page(base_url) as page:
        yield page


@pytest.fixture
def photo(tmp_path) -> tuple[Path, np.ndarray]:
    """A real photo, small so that the preview and the generation stay quick."""
    image = Image.fromarray(skimage.data.astronaut()).resize((128, 128), Image.LANCZOS)
    path = tmp_path / "astronaut.png"
    image.save(path)
    return path, np.asarray(image)


class UnitWidgets:
    """Selectors of one unit's widgets, by the reference's element ids."""

    def __init__(self, page, unit_count: int):
        self.page = page
        self.ids = UnitIds(TAB, UNIT, unit_count)

    def __call__(self, widget: str) -> str:
        return f"#{self.ids.control(widget)}"

    def image(self, which: str) -> str:
        return f"#{self.ids.image(which)}"

    def number(self, slider: str):
        return self.page.locator(f"{self(slider)} input[type=number]")

    def value(self, dropdown: str):
        return self.page.locator(f"{self(dropdown)} input")

    def radio(self, widget: str, label: str):
        return self.page.locator(self(widget)).get_by_text(label, exact=True)


def _set_number(page, selector: str, value: str) -> None:
    """Type into a slider's (or a gr.Number's) number field and leave it, as a user does."""
    field = page.locator(f"{selector} input[type=number]")
    field.fill(value)
    field.press("Tab")
    expect(field).to_have_value(value)


def _generate(page) -> tuple[str, list[str]]:
    """Click Generate and wait for its queued job: (the info text, the gallery's files), read from the job's
    last message, so that a second identical result is not mistaken for the first one still shown. gradio 3.41
    runs a queued job over a websocket of its own that the server closes after the result."""
    frames = []

    def watch(socket):  # runs before the socket's first frame is dispatched: no frame is missed
        socket.on("framereceived", lambda payload: frames.append(payload))

    page.on("websocket", watch)
    try:
        with page.expect_websocket() as opened:
            page.click(f"#{TAB}_generate")
        if not opened.value.is_closed():
            opened.value.wait_for_event("close", timeout=GENERATE_MS)
    finally:
        page.remove_listener("websocket", watch)
    message = next(json.loads(f) for f in frames if '"process_completed"' in str(f))
    assert message["success"], message
    gallery, info = message["output"]["data"]
    expect(page.locator(f"#{TAB}_info textarea")).to_have_value(info)
    expect(page.locator(f"#{TAB}_gallery .thumbnail-item img")).to_have_count(len(gallery))
    return info, [item["name"] for item in gallery]


def _unit_entry(info: str) -> str:
    found = re.search(rf'ControlNet {UNIT}: "[^"\n]*"', info)
    assert found, info
    return found.group(0)


def test_standalone_page_preview_generate_and_paste(page, base_url, service, photo, tmp_path):
    photo_path, pixels = photo
    unit = UnitWidgets(page, service.unit_count())
    model = next(e.name for e in service.models.entries() if e.stem == CONTROLNET)
    shots = []

    # 1. the page says it runs the demo model
    expect(markdown(page, "#demo_notice")).to_contain_text("random-weight DEMO model")
    shots.append(shot(page, tmp_path, "1_opened"))

    # 2. open the panel on unit 1, enable it, upload the photo
    page.locator(f"#{TAB}_controlnet .label-wrap").first.click()
    tabs = page.locator(f"#{tabs_id(TAB)} > .tab-nav > button")
    tabs.filter(has_text=f"ControlNet Unit {UNIT}").click()
    page.click(f"{unit('enable_checkbox')} input")
    expect(page.locator(f"{unit('enable_checkbox')} input")).to_be_checked()
    page.set_input_files(f"{unit.image('input_image')} input[type=file]", str(photo_path))
    expect(markdown(page, unit("unit_status"))).to_contain_text("no ControlNet model selected")

    # 3. Canny: its preprocessor and sliders; the demo ControlNet's name names no type, so Canny's model list
    # does not offer it (the reference's filter) - back to All, which keeps canny, to pick it
    unit.radio("type_filter_radio", "Canny").click()
    expect(unit.value("preprocessor_dropdown")).to_have_value("canny")
    expect(page.locator(unit("threshold_A_slider"))).to_contain_text("Low Threshold")
    unit.radio("type_filter_radio", "All").click()
    choose(page, unit("model_dropdown"), model)
    expect(unit.value("preprocessor_dropdown")).to_have_value("canny")
    expect(markdown(page, unit("unit_status"))).to_contain_text("Ready:")

    # the preview: canny's map of the photo at the default thresholds
    page.click(unit("trigger_preprocessor"))
    expect(markdown(page, unit("preprocessor_status"))).to_contain_text("Preview:")
    expect(page.locator(f"{unit('preprocessor_preview_checkbox')} input")).to_be_checked()
    expect(page.locator(f"{unit.image('generated_image')} img")).to_be_visible()
    canny = service.preprocessors.get("canny")
    expected = run_preprocessor(canny, pixels, resolve_params(canny, 512, 100, 200)).display
    assert np.array_equal(image_src(page, base_url, unit.image("generated_image")), expected)
    shots.append(shot(page, tmp_path, "2_canny_preview"))

    # 4. another preprocessor, other sliders; then canny again, with its own
    choose(page, unit("preprocessor_dropdown"), "scribble_xdog")
    expect(page.locator(unit("threshold_A_slider"))).to_contain_text("XDoG Threshold")
    expect(unit.number("threshold_A_slider")).to_have_value("32")
    expect(page.locator(unit("threshold_B_slider"))).to_be_hidden()
    shots.append(shot(page, tmp_path, "3_xdog_sliders"))
    choose(page, unit("preprocessor_dropdown"), "canny")
    expect(page.locator(unit("threshold_B_slider"))).to_contain_text("High Threshold")
    expect(unit.number("threshold_A_slider")).to_have_value("100")
    expect(unit.number("threshold_B_slider")).to_have_value("200")

    # 5. generate 64x64 in 3 steps with non-default unit values
    page.fill(f"#{TAB}_prompt textarea", "an astronaut")
    for slider, value in ((f"#{TAB}_width", "64"), (f"#{TAB}_height", "64"), (f"#{TAB}_steps", "3"),
                          (f"#{TAB}_seed", SEED), (unit("control_weight_slider"), "0.75"),
                          (unit("threshold_A_slider"), "50"), (unit("threshold_B_slider"), "120")):
        _set_number(page, slider, value)
    unit.radio("control_mode_radio", "ControlNet is more important").click()
    info, files = _generate(page)
    assert DEMO_NOTICE in info and len(files) == 2  # the image, then the detected map
    image, detected = (image_src(page, base_url, f"#{TAB}_gallery .thumbnail-item", i) for i in (0, 1))
    entry = _unit_entry(info)
    assert entry.startswith(f'ControlNet {UNIT}: "Module: canny, Model: {model}')
    for text in ("Weight: 0.75", "Threshold A: 50", "Threshold B: 120", "Control Mode: ControlNet is more important"):
        assert text in entry, entry
    assert "Seed: 1234" in info and "Size: 64x64" in info
    assert image.shape == (64, 64, 3)
    # the map: canny at the thresholds set above, fitted to 64x64 by the default resize mode (Crop and Resize)
    edges = run_preprocessor(canny, pixels, resolve_params(canny, 512, 50, 120)).display
    assert np.array_equal(detected, fit_detected_map(edges, ResizeMode.INNER_FIT, 64, 64))
    shots.append(shot(page, tmp_path, "4_generated"))

    # 6. change the unit (another preprocessor, so the paste changes the dropdown), then paste the infotext
    infotext = info.split("\n\n")[-1]
    choose(page, unit("preprocessor_dropdown"), "threshold")
    expect(page.locator(unit("threshold_A_slider"))).to_contain_text("Binarization Threshold")
    _set_number(page, unit("control_weight_slider"), "0.3")
    unit.radio("control_mode_radio", "Balanced").click()
    page.click(f"{unit('enable_checkbox')} input")
    expect(page.locator(f"{unit('enable_checkbox')} input")).not_to_be_checked()
    _set_number(page, f"#{TAB}_seed", "99")
    page.locator(f"#tab_{TAB} .label-wrap", has_text="Paste generation parameters").click()
    page.fill(f"#{TAB}_paste_text textarea", infotext)
    shots.append(shot(page, tmp_path, "5_changed_before_paste"))
    page.click(f"#{TAB}_paste")

    expect(page.locator(f"{unit('enable_checkbox')} input")).to_be_checked()
    expect(unit.value("preprocessor_dropdown")).to_have_value("canny")
    # the dropdown's change event gave the sliders canny's labels; the values are the pasted ones, not canny's
    # defaults
    expect(page.locator(unit("threshold_B_slider"))).to_contain_text("High Threshold")
    expect(page.locator(unit("threshold_A_slider"))).to_contain_text("Low Threshold")
    expect(unit.number("threshold_A_slider")).to_have_value("50")
    expect(unit.number("threshold_B_slider")).to_have_value("120")
    expect(unit.number("control_weight_slider")).to_have_value("0.75")
    expect(page.locator(f"{unit('control_mode_radio')} label", has_text="ControlNet is more important")
           .locator("input")).to_be_checked()
    expect(page.locator(f"#{TAB}_seed input")).to_have_value(SEED)
    expect(markdown(page, unit("unit_status"))).to_contain_text("Ready:")
    shots.append(shot(page, tmp_path, "6_pasted"))

    # generating again makes the same image and writes the same unit
    again, files_again = _generate(page)
    assert _unit_entry(again) == entry
    assert files_again == files  # gradio names its files by their content: the same image and map
    shots.append(shot(page, tmp_path, "7_generated_again"))
    keep(shots, SCREENS)
