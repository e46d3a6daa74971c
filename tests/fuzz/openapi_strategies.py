"""Requests drawn from the server's own OpenAPI document (what FastAPI publishes at /openapi.json), with Hypothesis.

`operation_requests(spec, method, path)` draws `(query, body)` for one route: every property the schema
declares, present or absent, null where a client may send null, of its declared type or (when mutating) of
another JSON type, plus unknown keys. `COST_BOUNDS` keep what a valid request may cost small (a 64 px image,
1-2 steps, batch 1-2): the fuzz explores what is refused, and what is accepted at a size a CI machine can
generate, never an hour-long valid request. Fields whose schema says nothing useful (alwayson_scripts is a free
dict; images are free strings) get domain strategies: units from `unit_strategies`, images from `IMAGE_POOL`.

`check_response` is the contract every answer must keep: no 5xx, JSON, and every 4xx in the one
`{"detail", "error", "field"}` shape.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from hypothesis import strategies as st
from PIL import Image

from tests.fuzz.unit_strategies import json_values, valid_units


def _png(array: np.ndarray, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _square(size: int, value: int = 255) -> np.ndarray:
    image = np.zeros((size, size, 3), np.uint8)
    image[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = value
    return image


# Images as clients send them: valid ones (small), and every kind of wrong one.
IMAGE_POOL = {
    "square64": _png(_square(64)),
    "square48": _png(_square(48)),
    "wide": _png(np.tile(np.linspace(0, 255, 96, dtype=np.uint8), (40, 1))),
    "rgba": _png(np.dstack([_square(64), np.full((64, 64), 128, np.uint8)])),
    "jpeg": _png(_square(64), "JPEG"),
    "data_uri": "data:image/png;base64," + _png(_square(32)),
    "mask64": _png(np.where(_square(64)[:, :, 0] > 0, 255, 0).astype(np.uint8)),
    "not_an_image": base64.b64encode(b"%PDF-1.4 not a picture").decode(),
    "not_base64": "this is not base64!",
    "empty": "",
    "path": "/etc/hostname",
    "url": "http://127.0.0.1:9/cat.png",
    "truncated_png": _png(_square(64))[:60],
}


VALID_IMAGES = ("square64", "square48", "wide", "rgba", "jpeg", "data_uri", "mask64")


def images():
    """A valid image two times in three, else one of the wrong kinds."""
    valid = st.sampled_from([IMAGE_POOL[k] for k in VALID_IMAGES])
    return valid | valid | st.sampled_from([v for k, v in sorted(IMAGE_POOL.items()) if k not in VALID_IMAGES])


def _ints(valid: list[int], invalid: list):
    """A valid value seven times in eight (a body has several such fields; each may spoil it)."""
    # Hypothesis draws the simplest choice (0, the first element) often: that one is valid
    return st.integers(0, 7).flatmap(lambda i: st.sampled_from(invalid if i == 7 else valid))


# field name -> the values a request may carry there: small valid ones and invalid ones, never valid and costly
COST_BOUNDS = {
    "width": _ints([64, 72], [-8, 0, 63, 65, 100, 4104, 10**9, 2**63, "64", 64.5, True]),
    "height": _ints([64, 56], [-64, 1, 4097, 10**12, "tall", 1.5]),
    "steps": _ints([1, 2], [0, -3, 1001, 10**15, "x", 2.5]),
    "batch_size": _ints([1, 2], [0, -1, 10**6, 2**62, "two"]),
    "n_iter": _ints([1], [0, -2, "x"]),
    "hr_scale": st.sampled_from([1.0, 1.25, -1.0, 0.0, 10**9, "big"]),
    "hr_second_pass_steps": _ints([0, 1], [-1, 10**9, "x"]),
    "hr_resize_x": _ints([0, 80], [-8, 10**9]),
    "hr_resize_y": _ints([0, 80], [-8, 10**9]),
    "firstphase_width": _ints([0], [-1, 10**9]),
    "firstphase_height": _ints([0], [-1, 10**9]),
    "canvas_width": _ints([1, 32, 64], [0, -1, 8193, 10**9, "w"]),
    "canvas_height": _ints([1, 32, 64], [0, -5, 10**9]),
    "controlnet_processor_res": _ints([-1, -100, 64, 128, 512], [0, 63, 2049, 10**9, "res", 1.5]),
}
# fields every generation body carries, so an absent one does not fall back to A1111's costly default
ALWAYS = ("width", "height", "steps", "batch_size", "n_iter", "init_images", "controlnet_module",
          "controlnet_input_images", "people", "pose_keypoints_2d")


def _resolve(schema: dict, spec: dict) -> dict:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def _junk():
    return json_values(6)


def from_schema(schema: dict, spec: dict, *, name: str = "", mutate: bool = False, depth: int = 0):
    """A strategy for values of `schema`; `mutate` lets any property take a value of the wrong type."""
    schema = _resolve(schema, spec)
    if name in COST_BOUNDS:
        return COST_BOUNDS[name]
    if name in DOMAIN:
        return DOMAIN[name]
    own = _typed(schema, spec, mutate=mutate, depth=depth)
    return (own | _junk()) if mutate and depth > 0 else own


def _typed(schema: dict, spec: dict, *, mutate: bool, depth: int):
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return st.one_of([from_schema(s, spec, mutate=mutate, depth=depth) for s in schema[key]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return _object(schema, spec, mutate=mutate, depth=depth)
    if kind == "array":
        items = from_schema(schema.get("items", {}), spec, mutate=mutate, depth=depth + 1)
        return st.lists(items, max_size=3)
    if kind == "integer":
        return st.integers(-(2**40), 2**40) | st.sampled_from([-1, 0, 1, 2**31, 2**63, -(2**63) - 1, 2**64 + 7])
    if kind == "number":
        return st.floats(allow_nan=True, allow_infinity=True, width=64) | st.integers(-100, 100)
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        return st.text(max_size=24)
    return _junk()


def _object(schema: dict, spec: dict, *, mutate: bool, depth: int):
    properties = schema.get("properties", {})
    required = set(schema.get("required", ()))

    @st.composite
    def build(draw):
        out = {}
        for prop, sub in properties.items():
            if prop in required or prop in ALWAYS or draw(st.integers(0, 2)) == 0:
                nullable = prop not in required and prop not in COST_BOUNDS and prop not in ALWAYS
                null = nullable and draw(st.integers(0, 3)) == 3  # A1111 clients send null for "unset"
                value = None if null else draw(from_schema(sub, spec, name=prop, mutate=mutate, depth=depth + 1))
                out[prop] = value
        if mutate and draw(st.integers(0, 9)) == 0:
            out[draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in properties))] = draw(_junk())
        return out

    return build()


# --- domain strategies for fields the schema leaves open --------------------------------------------------------
MODULES = ["none", "canny", "invert", "invert (from white bg & black line)", "blur_gaussian", "threshold",
           "scribble_xdog", "lineart_standard", "shuffle", "color", "t2ia_color_grid", "tile_resample",
           "tile_colorfix", "recolor_luminance", "inpaint", "inpaint_only", "scribble_sketch", "seg_passthrough",
           "mediapipe_face", "lineart", "depth", "openpose", "hed", "clip_vision", "no_such_module", "../canny", ""]
MODELS = ["demo-random-weights-controlnet-sd15", "demo", "None", "no_such_model", "../etc/passwd", ""]


@st.composite
def controlnet_args(draw):
    units = draw(st.lists(st.none() | valid_units(image=images(), known_modules=MODULES, models=MODELS)
                          | _units_with_extras(), max_size=3))
    script = {"args": units}
    if draw(st.integers(0, 19)) == 0:
        script = draw(_junk())
    key = draw(st.sampled_from(["controlnet", "ControlNet", "controlnet", "adetailer"]))
    return {key: script}


@st.composite
def _units_with_extras(draw):
    unit = draw(valid_units(image=st.none() | images(), known_modules=MODULES, models=MODELS))
    for field in ("mask", "effective_region_mask"):
        if draw(st.integers(0, 3)) == 0:
            unit[field] = draw(images())
    if draw(st.integers(0, 5)) == 0:
        unit["image"] = draw(st.sampled_from([{"image": IMAGE_POOL["square64"], "mask": IMAGE_POOL["mask64"]},
                                              [IMAGE_POOL["square64"], IMAGE_POOL["mask64"]],
                                              [{"image": IMAGE_POOL["square48"]}], [], {"mask": "x"}]))
    return unit


DOMAIN = {
    "alwayson_scripts": controlnet_args() | st.none(),
    "init_images": st.integers(0, 5).flatmap(  # absent one time in six (A1111's 404 "Init image not found")
        lambda i: st.none() if i == 5 else st.lists(images(), min_size=1, max_size=1 + (i == 4))),
    "firstpass_image": st.none() | st.just("") | st.none() | images(),
    "enable_hr": st.just(False) | st.booleans(),
    "styles": st.none() | st.just([]) | st.lists(st.text(max_size=6), max_size=2),
    "mask": images() | st.none(),
    "controlnet_input_images": st.lists(images(), min_size=1, max_size=2) | st.just([]),
    "controlnet_masks": st.lists(images(), max_size=2),
    "controlnet_module": st.sampled_from(MODULES) | st.sampled_from(MODULES) | st.text(max_size=12),
    "sampler_name": st.sampled_from(["Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "k_euler", "Heun++", ""]),
    "sampler_index": st.sampled_from(["Euler", "Euler a", "DPM++ 2M"]),
    "scheduler": st.sampled_from(["Automatic", "Karras", "Uniform", "Exponential", ""]),
    "script_name": st.none() | st.sampled_from(["", "X/Y/Z plot"]),
    "override_settings": st.none() | st.fixed_dictionaries({}, optional={
        "sd_model_checkpoint": st.sampled_from(["", "nope.safetensors", "../x"]),
        "CLIP_stop_at_last_layers": st.sampled_from([1, 2, 0, 99, "x", 1.5]),
        "control_net_no_detectmap": st.booleans(),
        "control_net_model_cache_size": st.integers(-1, 3),
        "samples_format": st.just("jpg")}),
    "hr_upscaler": st.none() | st.sampled_from(["Latent", "None", "Lanczos", "nope"]),
    "force_task_id": st.none() | st.text(max_size=10),
    "task_id": st.none() | st.text(max_size=10),
}


def operation_requests(spec: dict, method: str, path: str, *, mutate: bool):
    """A strategy of `(query params dict, JSON body or None)` for one route of `spec`."""
    operation = spec["paths"][path][method]
    parameters = [p for p in operation.get("parameters", []) if p.get("in") == "query"]
    query = st.fixed_dictionaries({}, optional={
        p["name"]: (from_schema(p.get("schema", {}), spec, name=p["name"], mutate=mutate, depth=1)
                    .map(_query_text)) for p in parameters})
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return st.tuples(query, st.none())
    body = from_schema(content["schema"], spec, mutate=mutate)
    if mutate:  # a body of another JSON type; not an object, [] or "": FastAPI reads those as no body, i.e.
        # every default (A1111's 512 x 512, 50 steps: a valid request, minutes long here, as in A1111)
        body = body | _junk().filter(lambda v: not isinstance(v, dict) and v not in ([], ""))
    return st.tuples(query, body)


def _query_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def operations(spec: dict) -> list[tuple[str, str]]:
    return [(method, path) for path, ops in sorted(spec["paths"].items()) for method in sorted(ops)]


# --- the contract -----------------------------------------------------------------------------------------------
def check_response(response) -> None:
    """No 5xx; JSON answers; every 4xx in the one error shape."""
    status = response.status_code
    assert status < 500, f"{status}: {response.text[:1500]}"
    if response.headers.get("content-type", "").startswith("text/html"):
        assert status == 200, response.text[:500]
        return
    payload = response.json()
    if status >= 400:
        assert isinstance(payload, dict), payload
        assert isinstance(payload.get("detail"), str) and payload["detail"], payload
        assert isinstance(payload.get("error"), str) and payload["error"], payload
        assert "field" in payload and (payload["field"] is None or isinstance(payload["field"], str)), payload
