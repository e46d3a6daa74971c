"""Our panel inside a real A1111 WebUI page: headless Debian Chromium driven by Playwright.

Skipped unless `A1111_URL` names a running WebUI (see test_api_a1111.py), and skipped when Chromium cannot be
launched:

    A1111_URL=http://127.0.0.1:7860 .venv/bin/python -m pytest tests/a1111/test_ui_a1111.py -v

* generation: enable unit 0, upload an image, pick canny and the ControlNet, Generate; the gallery shows the
  image and the detected map, and both are the pixels the API gives for the same unit and settings;
* infotext paste: a `ControlNet 1: "..."` line in the prompt box and A1111's paste button (#paste) set unit 1
  (thresholds kept through the preprocessor dropdown's change event) and switch unit 0 off;
* the X/Y/Z plot: our axes in its axis dropdown (with their value lists), a Weight plot from the page, and the
  error the page shows for an axis with no unit enabled.

Screenshots stay in each test's tmp folder; set `A1111_SCREENS=/some/folder` to keep copies there.
"""

from __future__ import annotations

import os

import pytest

if not os.environ.get("A1111_URL"):
    pytest.skip("A1111_URL is not set (no A1111 WebUI to test against)", allow_module_level=True)

import io  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from playwright.sync_api import Locator, Page, expect  # noqa: E402
from test_api_a1111 import (  # noqa: E402
    A1111_URL,
    SEED,
    SIZE,
    generate,
    get,
    ok_json,
    same,
    shapes_image,
    txt2img_payload,
    unit,
)

from tests.browser import chromium_page, keep, shot  # noqa: E402

SCREENS = os.environ.get("A1111_SCREENS")
LOAD_MS = 120_000  # the first page load of a busy server
GENERATE_MS = 600_000  # a generation on a shared CPU
STEPS = 2
PROMPT = "a house by a lake"
TAB = "txt2img"
OUR_AXES = ["[ControlNet] Enabled", "[ControlNet] Model", "[ControlNet] Weight", "[ControlNet] Guidance Start",
            "[ControlNet] Guidance End", "[ControlNet] Control Mode", "[ControlNet] Resize Mode",
            "[ControlNet] Preprocessor", "[ControlNet] Pre Resolution", "[ControlNet] Pre Threshold A",
            "[ControlNet] Pre Threshold B", "[ControlNet] Union Control Type"]


def unit_id(index: int, widget: str = "") -> str:
    """`#txt2img_controlnet_ControlNet-<i>_controlnet_<widget>`, or the unit's prefix for its images."""
    prefix = f"#{TAB}_controlnet_ControlNet-{index}"
    return f"{prefix}_controlnet_{widget}" if widget else prefix


# ----------------------------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def cn_model() -> str:
    names = ok_json(get("/controlnet/model_list"))["model_list"]
    wanted = os.environ.get("A1111_CN_MODEL")
    if wanted:
        return next(n for n in names if n == wanted or n.split(" [")[0] == wanted)
    if not names:
        pytest.skip("the server lists no ControlNet model")
    return next((n for n in names if "canny" in n.lower()), names[0])


@pytest.fixture
def page():
    with chromium_page(A1111_URL) as page:
        page.wait_for_selector(f"#{TAB}_generate", timeout=LOAD_MS)
        yield page


@pytest.fixture
def shots(tmp_path):
    taken: list[Path] = []
    yield taken
    if SCREENS and taken:
        keep(taken, Path(SCREENS))


def pick(page: Page, dropdown: str, option: str) -> None:
    """Choose `option` in a gr.Dropdown by its exact value (typing filters; "Euler" must not pick "Euler a")."""
    field = page.locator(f"{dropdown} input")
    field.click()
    field.fill(option)
    page.locator(f'{dropdown} li[data-value="{option}"]').click()
    expect(field).to_have_value(option)


def options(page: Page, dropdown: str | Locator) -> list[str]:
    """The values a gr.Dropdown (selector or locator) offers: opens it, reads its list, closes it."""
    box = page.locator(dropdown) if isinstance(dropdown, str) else dropdown
    box.locator("input").click()
    box.locator("li").first.wait_for()
    values = box.locator("li").evaluate_all("items => items.map(li => li.dataset.value)")
    page.keyboard.press("Escape")
    box.locator("input").blur()  # still focused, a click would not open the list again
    return values


def set_number(page: Page, selector: str, value) -> None:
    field = page.locator(f"{selector} input[type=number]")
    field.fill(str(value))
    field.press("Tab")
    expect(field).to_have_value(str(value))


def small_generation(page: Page) -> None:
    """The API tests' settings: the prompt, 64x64, Euler, the fixed seed, and STEPS steps."""
    page.locator(f"#{TAB}_prompt textarea").fill(PROMPT)
    set_number(page, f"#{TAB}_width", SIZE)
    set_number(page, f"#{TAB}_height", SIZE)
    set_number(page, f"#{TAB}_steps", STEPS)
    page.locator(f"#{TAB}_seed input").fill(str(SEED))
    pick(page, f"#{TAB}_sampling", "Euler")


def open_panel(page: Page) -> None:
    page.locator(f"#tab_{TAB} #controlnet .label-wrap").first.click()
    expect(page.locator(unit_id(0, "enable_checkbox"))).to_be_visible()


def canny_unit_0(page: Page, image: Path, model: str) -> None:
    """Unit 0 as `unit(model)` of the API tests: canny 100/200 at resolution 64, Crop and Resize, weight 1."""
    page.locator(f"{unit_id(0, 'enable_checkbox')} input").check()
    page.set_input_files(f"{unit_id(0)}_input_image input[type=file]", str(image))
    pick(page, unit_id(0, "preprocessor_dropdown"), "canny")
    pick(page, unit_id(0, "model_dropdown"), model)
    set_number(page, unit_id(0, "preprocessor_resolution_slider"), SIZE)
    expect(page.locator(unit_id(0, "unit_status")).first).to_contain_text("Ready:")


def click_generate(page: Page) -> str:
    """Generate and wait until A1111 reports the time taken; returns the result's log/error text."""
    log = page.locator(f"#html_log_{TAB}").last
    page.click(f"#{TAB}_generate")
    expect(log).to_contain_text("Time taken", timeout=GENERATE_MS)
    expect(page.locator(f"#{TAB}_interrupt")).to_be_hidden()  # the page has left its "Waiting..." state
    return log.inner_text()


def gallery(page: Page) -> list[np.ndarray]:
    """The gallery's images in order (each file once), as RGB pixels fetched from the server."""
    sources = page.eval_on_selector_all(f"#{TAB}_gallery img", "imgs => imgs.map(i => i.src)")
    images = []
    for src in dict.fromkeys(sources):
        with urllib.request.urlopen(src) as response:
            images.append(np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB")))
    return images


def slider_value(page: Page, index: int, widget: str) -> float:
    return float(page.locator(f"{unit_id(index, widget)} input[type=number]").input_value())


@pytest.fixture
def shapes_png(tmp_path) -> Path:
    path = tmp_path / "shapes.png"
    Image.fromarray(shapes_image()).save(path)
    return path


# ------------------------------------------------------------------------------------------- generation
def test_generate_with_a_canny_unit(page, cn_model, shapes_png, tmp_path, shots):
    small_generation(page)
    open_panel(page)
    canny_unit_0(page, shapes_png, cn_model)
    shots.append(shot(page, tmp_path, "a1111_1_unit_ready"))

    log = click_generate(page)
    assert "Error" not in log, log
    images = gallery(page)
    assert len(images) == 2, f"expected the image and the detected map in the gallery, got {len(images)}"
    info = page.locator(f"#html_info_{TAB}").last
    expect(info).to_contain_text(f'ControlNet 0: "Module: canny, Model: {cn_model}')
    shots.append(shot(page, tmp_path, "a1111_2_generated"))
    page.locator(f"#{TAB}_gallery .thumbnails button").nth(1).click()  # show the detected map large
    shots.append(shot(page, tmp_path, "a1111_3_detected_map"))

    api, _ = generate("txt2img", txt2img_payload([unit(cn_model)], steps=STEPS))
    assert same(images[0], api[0]), "the page's image differs from the API's for the same unit and settings"
    assert same(images[1], api[1]), "the page's detected map differs from the API's"
    assert set(np.unique(images[1])) <= {0, 255} and (images[1] > 0).any(), "the map is not canny edges"


# ------------------------------------------------------------------------------------------------ paste
def test_infotext_paste_sets_unit_1_and_switches_unit_0_off(page, cn_model, tmp_path, shots):
    infotext = (f"{PROMPT}\nSteps: {STEPS}, Sampler: Euler, Schedule type: Automatic, CFG scale: 7.0, Seed: {SEED}, "
                f"Size: {SIZE}x{SIZE}, ControlNet 1: \"Module: canny, Model: {cn_model}, Weight: 0.6, "
                "Resize Mode: Just Resize, Processor Res: 256, Threshold A: 50.0, Threshold B: 150.0, "
                "Guidance Start: 0.1, Guidance End: 0.8, Pixel Perfect: False, "
                "Control Mode: My prompt is more important\", Version: 1.10.1")
    open_panel(page)
    enable_0 = page.locator(f"{unit_id(0, 'enable_checkbox')} input")
    enable_0.check()
    page.locator(f"#{TAB}_prompt textarea").fill(infotext)
    page.click("#paste")

    expect(page.locator(f"#{TAB}_prompt textarea")).to_have_value(PROMPT)  # A1111 parsed it
    expect(enable_0).not_to_be_checked()
    page.locator(f"#{TAB}_controlnet_tabs > .tab-nav > button").nth(1).click()
    expect(page.locator(f"{unit_id(1, 'enable_checkbox')} input")).to_be_checked()
    expect(page.locator(f"{unit_id(1, 'preprocessor_dropdown')} input")).to_have_value("canny")
    expect(page.locator(f"{unit_id(1, 'model_dropdown')} input")).to_have_value(cn_model)
    expect(page.locator(f"{unit_id(1, 'control_mode_radio')} input[value='My prompt is more important']")) \
        .to_be_checked()
    expect(page.locator(f"{unit_id(1, 'resize_mode_radio')} input[value='Just Resize']")).to_be_checked()
    expect(page.locator(unit_id(1, "threshold_A_slider"))).to_contain_text("Low Threshold")
    expected = {"control_weight_slider": 0.6, "start_control_step_slider": 0.1, "ending_control_step_slider": 0.8,
                "preprocessor_resolution_slider": 256, "threshold_A_slider": 50, "threshold_B_slider": 150}
    for _ in range(2):  # once shown, and again after the preprocessor dropdown's change event has had its turn
        for widget, value in expected.items():
            expect(page.locator(f"{unit_id(1, widget)} input[type=number]")).to_have_value(str(value))
        time.sleep(2)
    assert slider_value(page, 1, "threshold_A_slider") == 50 and slider_value(page, 1, "threshold_B_slider") == 150, \
        "the preprocessor's change event reset the pasted thresholds to canny's defaults"
    expect(page.locator(f"#{TAB}_steps input[type=number]")).to_have_value(str(STEPS))
    shots.append(shot(page, tmp_path, "a1111_4_pasted_unit_1"))


# ------------------------------------------------------------------------------------------------ X/Y/Z
XYZ_X_TYPE = f"#script_{TAB}_xyz_plot_x_type"


def choose_xyz(page: Page) -> None:
    pick(page, f"#tab_{TAB} #script_list", "X/Y/Z plot")
    expect(page.locator(f"{XYZ_X_TYPE} input")).to_be_visible()


def test_xyz_axis_dropdown_lists_our_axes(page, cn_model, tmp_path, shots):
    choose_xyz(page)
    axes = options(page, XYZ_X_TYPE)
    ours = [a for a in axes if a.startswith("[ControlNet]")]
    assert ours == OUR_AXES, ours
    # An axis with choices shows them in a multiselect dropdown (no elem_id: the X row's second dropdown).
    pick(page, XYZ_X_TYPE, "[ControlNet] Model")
    values = page.locator(XYZ_X_TYPE).locator("xpath=..").locator(".gradio-dropdown").nth(1)
    expect(values).to_be_visible()
    assert cn_model in options(page, values)
    pick(page, XYZ_X_TYPE, "[ControlNet] Preprocessor")
    assert {"none", "canny"} <= set(options(page, values))
    field = page.locator(f"{XYZ_X_TYPE} input")  # for the screenshot: the axis list filtered to ours
    field.click()
    field.fill("[ControlNet]")
    expect(page.locator(f"{XYZ_X_TYPE} li")).to_have_count(len(OUR_AXES))
    shots.append(shot(page, tmp_path, "a1111_5_xyz_axes"))


def test_xyz_weight_plot_from_the_page(page, cn_model, shapes_png, tmp_path, shots):
    """X = Weight "0, 1", no legend: the grid's first cell is the image without units, the second the unit's."""
    small_generation(page)
    open_panel(page)
    canny_unit_0(page, shapes_png, cn_model)
    choose_xyz(page)
    pick(page, XYZ_X_TYPE, "[ControlNet] Weight")
    page.locator(f"#script_{TAB}_xyz_plot_x_values textarea").fill("0, 1")
    page.locator(f"#script_{TAB}_xyz_plot_draw_legend input").uncheck()
    log = click_generate(page)
    assert "Error" not in log, log
    shots.append(shot(page, tmp_path, "a1111_6_xyz_weight"))
    grid = gallery(page)[0]
    assert grid.shape == (SIZE, 2 * SIZE, 3), grid.shape
    without, _ = generate("txt2img", txt2img_payload(steps=STEPS))
    with_unit, _ = generate("txt2img", txt2img_payload([unit(cn_model)], steps=STEPS))
    assert same(grid[:, :SIZE], without[0]), "the weight-0 cell differs from the image without units"
    assert same(grid[:, SIZE:], with_unit[0]), "the weight-1 cell differs from the unit's image"


def test_xyz_axis_without_a_unit_shows_the_error(page, tmp_path, shots):
    small_generation(page)
    choose_xyz(page)
    pick(page, XYZ_X_TYPE, "[ControlNet] Weight")
    page.locator(f"#script_{TAB}_xyz_plot_x_values textarea").fill("0, 1")
    log = click_generate(page)
    shots.append(shot(page, tmp_path, "a1111_7_xyz_error"))
    assert "[ControlNet] Weight" in log and "no ControlNet unit is enabled" in log, log
    assert not page.eval_on_selector_all(f"#{TAB}_gallery img", "imgs => imgs.length"), "an image was generated"
