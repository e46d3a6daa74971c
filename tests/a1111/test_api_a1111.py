"""Our extension inside a real A1111 WebUI, over A1111's HTTP API.

Skipped unless `A1111_URL` names a running WebUI started with `--api` and this extension installed, e.g.

    A1111_URL=http://127.0.0.1:7860 .venv/bin/python -m pytest tests/a1111 -v

The server needs an SD1.x checkpoint and at least one SD1.x ControlNet in its model folders; random weights
are fine (the tests compare images with each other, never with expected pictures), but no tensor may be
all zeros, or no control can change anything. `A1111_CN_MODEL` picks the ControlNet (full "stem [hash]"
name or bare stem); by default the first model whose name contains "canny", else the first one listed.
Requests are small (64x64, 1-4 steps) so that each takes seconds on a CPU.

Images are compared exactly: on one server, the same payload and seed must give the same pixels, so a
request without units after requests with units must reproduce the image made before any unit was used.
"""

from __future__ import annotations

import os

import pytest

A1111_URL = os.environ.get("A1111_URL", "").rstrip("/")
if not A1111_URL:
    pytest.skip("A1111_URL is not set (no A1111 WebUI to test against)", allow_module_level=True)

import base64  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402

import numpy as np  # noqa: E402
import requests  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

TIMEOUT = float(os.environ.get("A1111_TIMEOUT", "600"))
SEED = 1234
SIZE = 64
CONTROL_MODES = ["Balanced", "My prompt is more important", "ControlNet is more important"]
HR_OPTIONS = ["Both", "Low res only", "High res only"]


# ----------------------------------------------------------------------------------------------- helpers
def to_b64(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def from_b64(text: str) -> np.ndarray:
    if text.startswith("data:"):
        text = text.split(",", 1)[1]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB"))


def shapes_image(size: int = SIZE) -> np.ndarray:
    """Black canvas with a white rectangle and a grey disc: plenty of edges for canny."""
    image = Image.new("RGB", (size, size), (0, 0, 0))
    draw = ImageDraw.Draw(image)
    s = size / 64
    draw.rectangle([8 * s, 8 * s, 36 * s, 30 * s], fill=(255, 255, 255))
    draw.ellipse([28 * s, 28 * s, 58 * s, 58 * s], fill=(160, 160, 160))
    return np.asarray(image)


def square_mask(size: int, lo: int, hi: int) -> np.ndarray:
    mask = np.zeros((size, size, 3), np.uint8)
    mask[lo:hi, lo:hi] = 255
    return mask


IMAGE_B64 = to_b64(shapes_image())


def get(path: str, **params) -> requests.Response:
    return requests.get(A1111_URL + path, params=params, timeout=TIMEOUT)


def post(path: str, payload) -> requests.Response:
    return requests.post(A1111_URL + path, json=payload, timeout=TIMEOUT)


def ok_json(resp: requests.Response) -> dict:
    assert resp.status_code == 200, f"HTTP {resp.status_code}: {resp.text[:2000]}"
    return resp.json()


def txt2img_payload(units: list | None = None, **overrides) -> dict:
    payload = {"prompt": "a house by a lake", "negative_prompt": "", "steps": 1, "width": SIZE, "height": SIZE,
               "seed": SEED, "sampler_name": "Euler", "cfg_scale": 7.0, "batch_size": 1, "n_iter": 1}
    payload.update(overrides)
    if units is not None:
        payload["alwayson_scripts"] = {"controlnet": {"args": units}}
    return payload


def img2img_payload(init: np.ndarray, units: list | None = None, **overrides) -> dict:
    payload = txt2img_payload(units, steps=2, denoising_strength=0.75, init_images=[to_b64(init)])
    payload.update(overrides)
    return payload


def generate(kind: str, payload: dict) -> tuple[list[np.ndarray], dict]:
    """POST to /sdapi/v1/{kind}; returns the decoded images and the parsed `info`."""
    body = ok_json(post(f"/sdapi/v1/{kind}", payload))
    info = json.loads(body["info"]) if isinstance(body.get("info"), str) else body.get("info") or {}
    return [from_b64(b) for b in body["images"]], info


_CACHE: dict = {}


def cached(key, kind: str, payload: dict) -> tuple[list[np.ndarray], dict]:
    """One request per key per session: tests that compare images share them."""
    if key not in _CACHE:
        _CACHE[key] = generate(kind, payload)
    return _CACHE[key]


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b))


def assert_unit_error(resp: requests.Response, index: int, field: str) -> None:
    """The request failed as the caller's fault (4xx) and the message names the unit index and the field."""
    assert 400 <= resp.status_code < 500, (
        f"expected HTTP 4xx naming unit {index} and field {field!r}, got {resp.status_code}: {resp.text[:1500]}")
    text = resp.text
    assert re.search(rf"\bunit\W{{0,3}}{index}\b", text, re.IGNORECASE), f"unit {index} not named: {text[:1500]}"
    assert field in text, f"field {field!r} not named: {text[:1500]}"
    try:
        body = resp.json()
    except ValueError:
        body = {}
    assert not (isinstance(body, dict) and body.get("images")), "an error response carried images"


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def model_name() -> str:
    names = ok_json(get("/controlnet/model_list"))["model_list"]
    wanted = os.environ.get("A1111_CN_MODEL")
    if wanted:
        match = [n for n in names if n == wanted or n.split(" [")[0] == wanted]
        assert match, f"A1111_CN_MODEL={wanted!r} is not in /controlnet/model_list: {names}"
        return match[0]
    if not names:
        pytest.skip("the server lists no ControlNet model")
    return next((n for n in names if "canny" in n.lower()), names[0])


@pytest.fixture(scope="module")
def baseline() -> np.ndarray:
    """txt2img without units, made before any test of this module sends a unit (see `model`)."""
    images, _ = cached("baseline", "txt2img", txt2img_payload())
    return images[0]


@pytest.fixture(scope="module")
def model(model_name, baseline) -> str:
    """The ControlNet for generation tests; asking for it first makes the baseline without units."""
    return model_name


def unit(cn_model: str, **overrides) -> dict:
    u = {"enabled": True, "module": "canny", "model": cn_model, "image": IMAGE_B64, "weight": 1.0,
         "resize_mode": "Crop and Resize", "processor_res": SIZE, "threshold_a": 100, "threshold_b": 200,
         "guidance_start": 0.0, "guidance_end": 1.0, "pixel_perfect": False, "control_mode": "Balanced"}
    u.update(overrides)
    return {k: v for k, v in u.items() if v is not None}


def one_unit(model: str):
    return cached("one_unit", "txt2img", txt2img_payload([unit(model)]))


# ------------------------------------------------------------------------------------------------- routes
def test_version():
    body = ok_json(get("/controlnet/version"))
    assert isinstance(body.get("version"), int), body


def test_model_list(model_name):
    names = ok_json(get("/controlnet/model_list"))["model_list"]
    assert model_name in names
    assert "None" not in names
    assert all(re.fullmatch(r".+ \[[0-9a-f]{8}\]", n) for n in names), names


def test_module_list():
    body = ok_json(get("/controlnet/module_list"))
    modules = body["module_list"]
    assert "canny" in modules and "none" in modules, modules
    detail = body["module_detail"]["canny"]
    assert detail["model_free"] is False
    assert isinstance(detail["sliders"], list) and detail["sliders"], detail


def test_control_types(model_name):
    types = ok_json(get("/controlnet/control_types"))["control_types"]
    assert "All" in types and "Canny" in types, list(types)
    assert "canny" in types["Canny"]["module_list"], types["Canny"]
    assert model_name in types["All"]["model_list"]
    if "canny" in model_name.lower():
        assert model_name in types["Canny"]["model_list"], types["Canny"]


def test_settings():
    body = ok_json(get("/controlnet/settings"))
    assert isinstance(body.get("control_net_unit_count"), int) and body["control_net_unit_count"] >= 1, body


def test_detect_canny():
    body = ok_json(post("/controlnet/detect", {
        "controlnet_module": "canny", "controlnet_input_images": [IMAGE_B64], "controlnet_processor_res": SIZE,
        "controlnet_threshold_a": 100, "controlnet_threshold_b": 200}))
    assert len(body["images"]) == 1, body.get("info")
    edges = from_b64(body["images"][0])
    assert edges.shape[:2] == (SIZE, SIZE)
    assert set(np.unique(edges)) <= {0, 255} and (edges > 0).any()


def test_detect_unknown_module_is_4xx():
    resp = post("/controlnet/detect", {"controlnet_module": "no_such_module", "controlnet_input_images": [IMAGE_B64]})
    assert 400 <= resp.status_code < 500, f"HTTP {resp.status_code}: {resp.text[:1000]}"


# --------------------------------------------------------------------------------------------- generation
def test_txt2img_without_units(baseline):
    assert baseline.shape == (SIZE, SIZE, 3)
    assert baseline.std() > 0  # not a flat (NaN-decoded) image


def test_txt2img_disabled_unit_is_a_no_op(model, baseline):
    images, _ = generate("txt2img", txt2img_payload([unit(model, enabled=False)]))
    assert len(images) == 1, "a disabled unit added images"
    assert same(images[0], baseline), "a disabled unit changed the image"


def test_one_unit_full_name(model, baseline):
    images, info = one_unit(model)
    assert len(images) == 2, f"expected 1 image + 1 detected map, got {len(images)}"
    assert images[0].shape == (SIZE, SIZE, 3)
    assert not same(images[0], baseline), "the unit did not change the image"
    detected = images[1]
    assert detected.shape[:2] == (SIZE, SIZE) and (detected > 0).any()
    infotext = (info.get("infotexts") or [""])[0]
    assert "ControlNet 0" in infotext, infotext


def test_one_unit_bare_stem(model):
    full, _ = one_unit(model)
    images, _ = generate("txt2img", txt2img_payload([unit(model.split(" [")[0])]))
    assert len(images) == 2
    assert same(images[0], full[0]), "bare stem and full name gave different images"


def test_three_units(model):
    units = [unit(model), unit(model, threshold_a=50, threshold_b=100, weight=0.5),
             unit(model, module="none", weight=0.7)]
    images, info = generate("txt2img", txt2img_payload(units))
    assert len(images) == 4, f"expected 1 image + 3 detected maps, got {len(images)}"
    assert not same(images[0], one_unit(model)[0][0])
    infotext = (info.get("infotexts") or [""])[0]
    assert all(f"ControlNet {i}" in infotext for i in range(3)), infotext


@pytest.mark.parametrize("mode_index", range(3), ids=["balanced", "my_prompt", "controlnet"])
def test_control_mode_string_and_int(model, mode_index):
    by_name, _ = cached(("mode", mode_index), "txt2img",
                        txt2img_payload([unit(model, control_mode=CONTROL_MODES[mode_index])]))
    by_int, _ = generate("txt2img", txt2img_payload([unit(model, control_mode=mode_index)]))
    assert len(by_name) == 2 and len(by_int) == 2
    assert same(by_name[0], by_int[0]), f"control_mode {mode_index} and {CONTROL_MODES[mode_index]!r} differ"


def test_control_modes_differ(model):
    images = [cached(("mode", i), "txt2img", txt2img_payload([unit(model, control_mode=CONTROL_MODES[i])]))[0][0]
              for i in range(3)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not same(images[i], images[j]), f"{CONTROL_MODES[i]!r} == {CONTROL_MODES[j]!r}"


def test_guidance_start_end(model):
    """4 steps. A1111 updates `state.sampling_step` in the sampler's callback, after each step, so the four
    denoiser calls see the fractions 0, 0, .25, .5 (the reference gates on the same numbers): (0, .1) runs
    the unit on the first two steps, (.4, 1) on the last one only; each window gives a different image."""
    none, _ = generate("txt2img", txt2img_payload(steps=4))
    results = {}
    for window in [(0.0, 1.0), (0.0, 0.1), (0.4, 1.0)]:
        images, _ = generate("txt2img", txt2img_payload(
            [unit(model, guidance_start=window[0], guidance_end=window[1])], steps=4))
        assert len(images) == 2
        results[window] = images[0]
    distinct = [none[0], *results.values()]
    for i in range(len(distinct)):
        for j in range(i + 1, len(distinct)):
            assert not same(distinct[i], distinct[j]), f"windows {i} and {j} (0 = no unit) gave the same image"


def test_weight_zero_is_the_image_without_units(model, baseline):
    images, _ = generate("txt2img", txt2img_payload([unit(model, weight=0.0)]))
    assert len(images) == 2, "weight 0 still shows its detected map"
    assert same(images[0], baseline), "weight 0 changed the image"


def hires_payload(units=None) -> dict:
    return txt2img_payload(units, enable_hr=True, hr_scale=2, hr_upscaler="Latent", hr_second_pass_steps=1,
                           denoising_strength=0.6)


@pytest.mark.parametrize("hr_option", HR_OPTIONS)
def test_hires_fix_hr_option(model, hr_option):
    images, _ = cached(("hr", hr_option), "txt2img", hires_payload([unit(model, hr_option=hr_option)]))
    assert images[0].shape == (2 * SIZE, 2 * SIZE, 3)
    # The reference returns two maps per unit with hires fix, whatever hr_option: hires size first, then low-res.
    assert len(images) == 3, f"expected 1 image + 2 detected maps, got {len(images)}"
    assert images[1].shape[:2] == (2 * SIZE, 2 * SIZE) and images[2].shape[:2] == (SIZE, SIZE)


def test_hires_fix_options_differ(model):
    none, _ = cached("hr_none", "txt2img", hires_payload())
    results = [none[0]] + [cached(("hr", o), "txt2img", hires_payload([unit(model, hr_option=o)]))[0][0]
                           for o in HR_OPTIONS]
    names = ["no unit", *HR_OPTIONS]
    for i in range(len(results)):
        for j in range(i + 1, len(results)):
            assert not same(results[i], results[j]), f"{names[i]!r} and {names[j]!r} gave the same image"


def test_img2img_unit_uses_init_image(model):
    init = shapes_image()
    without, _ = generate("img2img", img2img_payload(init))
    implicit, _ = generate("img2img", img2img_payload(init, [unit(model, image=None)]))
    explicit, _ = generate("img2img", img2img_payload(init, [unit(model)]))
    assert len(without) == 1 and len(implicit) == 2 and len(explicit) == 2
    assert not same(implicit[0], without[0]), "the unit without image did nothing"
    assert same(implicit[1], explicit[1]), "the map from the init image differs from the map of the same image"
    assert same(implicit[0], explicit[0])


@pytest.mark.parametrize("a1111_mode, as_unit_mode", [(0, "Just Resize"), (2, "Resize and Fill")])
def test_img2img_init_image_is_fitted_by_a1111s_resize_mode(model, a1111_mode, as_unit_mode):
    """A unit reading the init image fits it as A1111 fitted it for the latent (its `resize_mode`), whatever the
    unit's own mode says: the reference's rule. Here the init image is wider than the output, so the modes differ."""
    init = np.ascontiguousarray(np.concatenate([shapes_image(), shapes_image()[:, :32]], axis=1))  # 64x96
    payload = dict(resize_mode=a1111_mode)
    implicit, _ = generate("img2img", img2img_payload(init, [unit(model, image=None, resize_mode="Crop and Resize")],
                                                      **payload))
    explicit, _ = generate("img2img", img2img_payload(init, [unit(model, image=to_b64(init),
                                                                  resize_mode=as_unit_mode)], **payload))
    cropped, _ = generate("img2img", img2img_payload(init, [unit(model, image=to_b64(init))], **payload))
    assert same(implicit[1], explicit[1]), "the init image was not fitted by A1111's resize mode"
    assert same(implicit[0], explicit[0])
    assert not same(implicit[1], cropped[1]), "the modes give the same map here: the test shows nothing"


@pytest.mark.parametrize("module", ["canny", "inpaint_only"])
def test_inpaint_only_masked(model, module):
    size, lo, hi = 2 * SIZE, 48, 80
    init = shapes_image(size)
    payload = dict(mask=to_b64(square_mask(size, lo, hi)), inpaint_full_res=True, inpaint_full_res_padding=8,
                   mask_blur=0, inpainting_fill=1, width=SIZE, height=SIZE)
    without, _ = cached("inpaint_none", "img2img", img2img_payload(init, **payload))
    images, _ = generate("img2img", img2img_payload(init, [unit(model, module=module, image=None)], **payload))
    assert len(images) == 2, f"expected 1 image + 1 detected map, got {len(images)}"
    out = images[0]
    assert out.shape == (size, size, 3), "'Only masked' must paste back into the full-size image"
    outside = np.abs(out[:16, :16].astype(int) - init[:16, :16].astype(int)).max()
    assert outside <= 2, f"pixels far outside the mask changed by {outside}"
    assert not same(out[lo:hi, lo:hi], without[0][lo:hi, lo:hi]), "the unit did not change the masked region"


def test_batch_size_two(model):
    images, _ = generate("txt2img", txt2img_payload([unit(model)], batch_size=2))
    assert len(images) == 3, f"expected 2 images + 1 detected map, got {len(images)}"
    assert not same(images[0], images[1])


def test_n_iter_two(model):
    """Two iterations re-attach the unit for the second sampling; iteration 0 is the single-run image."""
    images, _ = generate("txt2img", txt2img_payload([unit(model)], n_iter=2))
    assert len(images) == 3, f"expected 2 images + 1 detected map, got {len(images)}"
    assert same(images[0], one_unit(model)[0][0]), "iteration 0 differs from the same seed in a single run"
    with_unit_seed2 = images[1]
    without_seed2, _ = generate("txt2img", txt2img_payload(seed=SEED + 1))
    assert not same(with_unit_seed2, without_seed2[0]), "the unit was not applied in the second iteration"


# ------------------------------------------------------------------------------------------------- errors
ERROR_CASES = {
    # id: (units builder, index of the bad unit, field the message must name)
    "unknown_module": (lambda m: [unit(m), unit(m, module="no_such_module")], 1, "module"),
    "unknown_model": (lambda m: [unit(m, model="no_such_model [0badf00d]")], 0, "model"),
    "bad_base64_image": (lambda m: [unit(m), unit(m), unit(m, image="this is not base64!!")], 2, "image"),
    "enabled_without_image": (lambda m: [unit(m, image=None)], 0, "image"),
    "weight_3": (lambda m: [unit(m), unit(m, weight=3.0)], 1, "weight"),
    "advanced_weighting_length": (lambda m: [unit(m, advanced_weighting=[1.0] * 5)], 0, "advanced_weighting"),
    "guidance_start_after_end": (lambda m: [unit(m, guidance_start=0.8, guidance_end=0.2)], 0, "guidance_"),
    "unknown_control_mode": (lambda m: [unit(m, control_mode="Nope")], 0, "control_mode"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_error_fails_the_request(model, case):
    build, index, field = ERROR_CASES[case]
    assert_unit_error(post("/sdapi/v1/txt2img", txt2img_payload(build(model))), index, field)


# ------------------------------------------------------------------------------------------------ settings
def test_detected_maps_are_autosaved_when_the_setting_says_so(model, tmp_path):
    """control_net_detectmap_autosaving + control_net_detectedmap_dir: each unit's map lands in <dir>/<module>.
    The server runs on this machine, so the test reads the folder it wrote."""
    keys = ("control_net_detectmap_autosaving", "control_net_detectedmap_dir")
    before = {k: v for k, v in ok_json(get("/sdapi/v1/options")).items() if k in keys}
    folder = tmp_path / "maps"
    try:
        ok_json(post("/sdapi/v1/options", {keys[0]: True, keys[1]: str(folder)}))
        images, _ = generate("txt2img", txt2img_payload([unit(model)]))
        saved = sorted((folder / "canny").rglob("*.png"))  # A1111 may add a date folder (save_to_dirs)
        assert len(saved) == 1, list(folder.rglob("*"))
        assert same(np.asarray(Image.open(saved[0]).convert("RGB")), images[1])  # the map the answer carries
        ok_json(post("/sdapi/v1/options", {keys[0]: False}))
        generate("txt2img", txt2img_payload([unit(model)]))
        assert len(list((folder / "canny").rglob("*.png"))) == 1  # off again: nothing more written
    finally:
        ok_json(post("/sdapi/v1/options", {keys[0]: before.get(keys[0], False),
                                           keys[1]: before.get(keys[1], "detected_maps")}))


# ------------------------------------------------------------------------------------------ nothing left over
def test_no_unit_after_unit_is_the_baseline(model, baseline):
    generate("txt2img", txt2img_payload([unit(model)]))
    images, _ = generate("txt2img", txt2img_payload())
    assert same(images[0], baseline), "a request with a unit left something patched"
    post("/sdapi/v1/txt2img", txt2img_payload([unit(model, advanced_weighting=[1.0] * 5)]))
    images, _ = generate("txt2img", txt2img_payload())
    assert same(images[0], baseline), "a failed request with a unit left something patched"
