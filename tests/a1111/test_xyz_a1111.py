"""Our X/Y/Z plot axes inside a real A1111 WebUI, over its HTTP API (txt2img with `script_name: "x/y/z plot"`).

Skipped unless `A1111_URL` names a running WebUI (see test_api_a1111.py, whose helpers this module uses):

    A1111_URL=http://127.0.0.1:7860 .venv/bin/python -m pytest tests/a1111 -v

The X/Y/Z script's `script_args` (A1111 v1.10.1, scripts/xyz_grid.py `Script.ui`'s return order):
  x_type, x_values, x_values_dropdown, y_type, y_values, y_values_dropdown, z_type, z_values, z_values_dropdown,
  draw_legend, include_lone_images, include_sub_grids, no_fixed_seeds, vary_seeds_x, vary_seeds_y, vary_seeds_z,
  margin_size, csv_mode
The *_type arguments are indexes into the axis labels that /sdapi/v1/script-info lists as x_type's choices.
An axis with choices reads its dropdown list (unless csv_mode), any other its comma-separated text.
The script fixes the seed once for the whole grid, so every cell has the payload's seed and can be compared
with single requests. With include_lone_images the answer is [grid, cell 0, cell 1, ...]; the cells are each
generation's first image only (no detected maps).
"""

from __future__ import annotations

import os

import pytest

if not os.environ.get("A1111_URL"):
    pytest.skip("A1111_URL is not set (no A1111 WebUI to test against)", allow_module_level=True)

import numpy as np  # noqa: E402
from test_api_a1111 import (  # noqa: E402
    SIZE,
    cached,
    generate,
    get,
    ok_json,
    one_unit,
    post,
    same,
    txt2img_payload,
    unit,
)

XYZ = "x/y/z plot"
OUR_AXES = ["[ControlNet] Enabled", "[ControlNet] Model", "[ControlNet] Weight", "[ControlNet] Guidance Start",
            "[ControlNet] Guidance End", "[ControlNet] Control Mode", "[ControlNet] Resize Mode",
            "[ControlNet] Preprocessor", "[ControlNet] Pre Resolution", "[ControlNet] Pre Threshold A",
            "[ControlNet] Pre Threshold B", "[ControlNet] Union Control Type"]


def axis_labels(img2img: bool = False) -> list[str]:
    scripts = ok_json(get("/sdapi/v1/script-info"))
    xyz = next((s for s in scripts if s["name"] == XYZ and s["is_img2img"] == img2img), None)
    if xyz is None:
        pytest.skip("this WebUI has no X/Y/Z plot script")
    x_type = next(a for a in xyz["args"] if a["label"] == "X type")
    return x_type["choices"]


def xyz_args(label: str, values: str = "", dropdown: list | None = None) -> list:
    """script_args for an X axis only (Y and Z "Nothing"), no legend, cells returned after the grid."""
    return [axis_labels().index(label), values, dropdown or [], 0, "", [], 0, "", [],
            False, True, False, False, False, False, False, 0, False]


def xyz_payload(units: list | None, label: str, values: str = "", dropdown: list | None = None, **overrides) -> dict:
    return txt2img_payload(units, script_name=XYZ, script_args=xyz_args(label, values, dropdown), **overrides)


def plot(payload: dict, cells: int) -> list[np.ndarray]:
    """The cells of a one-row grid, after checking that the grid is those cells side by side."""
    images, info = generate("txt2img", payload)
    assert len(images) == 1 + cells, f"expected the grid and {cells} cells, got {len(images)} images"
    grid, *out = images
    assert all(c.shape == (SIZE, SIZE, 3) for c in out), [c.shape for c in out]
    assert same(grid, np.hstack(out)), "the grid is not its cells side by side"
    assert "X Type: " in (info.get("infotexts") or [""])[0], info.get("infotexts")
    for cell in out:
        assert cell.std() > 0, "a blank cell: its generation failed (the X/Y/Z script only prints the error)"
    return out


def assert_axis_error(resp, label: str, *words: str) -> None:
    assert 400 <= resp.status_code < 500, f"expected HTTP 4xx naming {label!r}, got {resp.status_code}: " \
                                          f"{resp.text[:1500]}"
    assert label in resp.text, f"axis {label!r} not named: {resp.text[:1500]}"
    for word in words:
        assert word in resp.text, f"{word!r} not in: {resp.text[:1500]}"
    body = resp.json()
    assert not body.get("images"), "an error response carried images"


@pytest.fixture(scope="module")
def no_units() -> np.ndarray:
    """txt2img without units (the same request and cache entry as test_api_a1111's `baseline`)."""
    return cached("baseline", "txt2img", txt2img_payload())[0][0]


@pytest.fixture(scope="module")
def cn_model(no_units) -> str:
    """The ControlNet as test_api_a1111 picks it: A1111_CN_MODEL, else the first "canny", else the first."""
    names = ok_json(get("/controlnet/model_list"))["model_list"]
    wanted = os.environ.get("A1111_CN_MODEL")
    if wanted:
        return next(n for n in names if n == wanted or n.split(" [")[0] == wanted)
    if not names:
        pytest.skip("the server lists no ControlNet model")
    return next((n for n in names if "canny" in n.lower()), names[0])


# ----------------------------------------------------------------------------------------------- listing
@pytest.mark.parametrize("img2img", [False, True], ids=["txt2img", "img2img"])
def test_our_axes_are_listed_with_the_reference_labels(img2img):
    labels = axis_labels(img2img)
    missing = [a for a in OUR_AXES if a not in labels]
    assert not missing, f"missing X/Y/Z axes: {missing}"
    assert sum(label.startswith("[ControlNet]") for label in labels) == len(OUR_AXES), "an axis is listed twice"


# -------------------------------------------------------------------------------------------- generation
def test_weight_axis(cn_model, no_units):
    weight0, weight1 = plot(xyz_payload([unit(cn_model)], "[ControlNet] Weight", "0, 1"), cells=2)
    assert same(weight0, no_units), "the weight-0 cell differs from the image without units"
    assert not same(weight1, no_units), "the weight-1 cell is the image without units"
    assert same(weight1, one_unit(cn_model)[0][0]), "the weight-1 cell differs from the same unit sent without a plot"


def test_enabled_axis_turns_unit_0_on_and_off(cn_model, no_units):
    """A disabled unit 0: "True" enables it (the one-unit image), "False" is the image without units."""
    on, off = plot(xyz_payload([unit(cn_model, enabled=False)], "[ControlNet] Enabled", dropdown=["True", "False"]),
                   cells=2)
    assert same(on, one_unit(cn_model)[0][0]), "Enabled: True did not give the one-unit image"
    assert same(off, no_units), "Enabled: False did not give the image without units"


def test_guidance_end_axis_values_differ(cn_model):
    """4 steps, so that an end of 0.1 leaves the unit out of the last two (see test_api_a1111's windows)."""
    a, b = plot(xyz_payload([unit(cn_model)], "[ControlNet] Guidance End", "0.1, 1", steps=4), cells=2)
    assert not same(a, b), "guidance end 0.1 and 1 gave the same image"


# ------------------------------------------------------------------------------------------------ errors
def test_bad_value_fails_naming_the_axis(cn_model):
    resp = post("/sdapi/v1/txt2img", xyz_payload([unit(cn_model)], "[ControlNet] Guidance End", "0.5, 1.5"))
    assert_axis_error(resp, "[ControlNet] Guidance End", "1.5")


def test_value_that_conflicts_with_the_unit_fails_naming_the_axis(cn_model):
    """0.9 is a valid guidance start alone, but not with the unit's guidance end 0.5."""
    resp = post("/sdapi/v1/txt2img",
                xyz_payload([unit(cn_model, guidance_end=0.5)], "[ControlNet] Guidance Start", "0, 0.9"))
    assert_axis_error(resp, "[ControlNet] Guidance Start", "0.9", "unit 0", "guidance_start")


def test_unknown_model_fails_naming_the_axis(cn_model):
    resp = post("/sdapi/v1/txt2img", xyz_payload([unit(cn_model)], "[ControlNet] Model",
                                                 dropdown=[cn_model, "no_such_model [0badf00d]"]))
    assert_axis_error(resp, "[ControlNet] Model", "no_such_model")


@pytest.mark.parametrize("units", ["disabled_unit", "none_sent"])
def test_axis_without_an_enabled_unit_fails(cn_model, units):
    sent = [unit(cn_model, enabled=False)] if units == "disabled_unit" else None
    resp = post("/sdapi/v1/txt2img", xyz_payload(sent, "[ControlNet] Weight", "0, 1"))
    assert_axis_error(resp, "[ControlNet] Weight", "no ControlNet unit is enabled")


@pytest.mark.parametrize("image", [None, "not base64!"], ids=["no_image", "bad_image"])
def test_enabling_a_unit_whose_image_cannot_be_used_fails_before_the_grid(cn_model, image):
    """Enabled "True" on a disabled unit without a usable image would fail inside the cell, which the X/Y/Z
    script turns into a blank cell under HTTP 200; the check before the grid names the unit and field instead."""
    sent = [unit(cn_model, enabled=False, image=image)]
    resp = post("/sdapi/v1/txt2img", xyz_payload(sent, "[ControlNet] Enabled", dropdown=["True", "False"]))
    assert_axis_error(resp, "[ControlNet] Enabled", "unit 0", "image")


def test_failed_plot_leaves_nothing_behind(cn_model, no_units):
    post("/sdapi/v1/txt2img", xyz_payload([unit(cn_model)], "[ControlNet] Guidance End", "1.5"))
    images, _ = generate("txt2img", txt2img_payload())
    assert same(images[0], no_units)
