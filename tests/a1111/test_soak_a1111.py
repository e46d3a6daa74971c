"""A short soak of our extension inside a real A1111 WebUI, over its HTTP API, with faults a client can cause.

Ten generations with drawn units (1-3 of them; every ControlNet-like file the rig makes, so the model cache
of 2 evicts; modules, control and resize modes, weights, start/end, pixel perfect), txt2img and img2img (units
reading the init image too), sizes 64-96 and hires fix; between them, in turn: a client that hangs up while its
generation runs, an interrupt (`/sdapi/v1/interrupt`) in the middle of sampling, and a request whose last unit
fails validation after the ones before it were parsed (HTTP 4xx naming that unit and field; no image). After
each fault the image without units is the one made before the soak (a hook, a swapped forward or a changed weight
left behind would change it), and nothing is left queued; at the end too. Tiny sizes and 1-2 steps, as in
tests/a1111/test_api_a1111.py: about 2-3 minutes on the rig's one CPU thread. The standalone host's long soak
with its RSS and step-time figures is tools/soak.py.

Skipped unless `A1111_URL` names a running WebUI (see test_api_a1111.py).
"""

from __future__ import annotations

import os

import pytest

if not os.environ.get("A1111_URL"):
    pytest.skip("A1111_URL is not set (no A1111 WebUI to test against)", allow_module_level=True)

import json  # noqa: E402
import random  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from urllib.parse import urlparse  # noqa: E402

import numpy as np  # noqa: E402

from tests.a1111.test_api_a1111 import (  # noqa: E402
    A1111_URL,
    CONTROL_MODES,
    SIZE,
    assert_unit_error,
    from_b64,
    get,
    img2img_payload,
    ok_json,
    post,
    same,
    shapes_image,
    to_b64,
    txt2img_payload,
)

GENERATIONS = int(os.environ.get("CN_A1111_SOAK_GENERATIONS", "10"))
# every control file tools/a1111_rig.sh makes; the first two are plain ControlNets (the model cache holds 2)
MODEL_STEMS = ("control_v11p_sd15_canny", "control_v11f1p_sd15_depth", "t2iadapter_depth_sd14v1",
               "control-lora-canny-rank128")
MODULES = ("canny", "invert", "none", "threshold", "blur_gaussian", "lineart_standard", "scribble_xdog",
           "tile_resample")
RESIZE_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill")
SIZES = ((64, 64), (96, 64), (64, 96))
PLAIN = txt2img_payload(steps=1)  # the image without units, before and after


@pytest.fixture(scope="module")
def models() -> list[str]:
    listed = ok_json(get("/controlnet/model_list"))["model_list"]
    found = [n for stem in MODEL_STEMS for n in listed if n.split(" [")[0] == stem]
    if len(found) < len(MODEL_STEMS):
        pytest.skip(f"the soak wants {MODEL_STEMS} (made by tools/a1111_rig.sh); listed: {listed}")
    return found


@pytest.fixture(scope="module")
def plain(models) -> np.ndarray:
    return _images(ok_json(post("/sdapi/v1/txt2img", PLAIN)))[0]


def _images(body: dict) -> list[np.ndarray]:
    return [from_b64(b) for b in body["images"]]


def _progress() -> dict:
    return ok_json(get("/sdapi/v1/progress", skip_current_image="true"))


def _wait_until(predicate, what: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = _progress()
        if predicate(state):
            return state
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {state}"
        time.sleep(0.05)


def _sampling(state: dict) -> bool:
    """A job is running and has finished a sampling step but not its last."""
    s = state["state"]
    return s["job_count"] > 0 and 1 <= s["sampling_step"] < s["sampling_steps"]


def _idle(state: dict) -> bool:
    return state["state"]["job_count"] == 0


def _scene(rng: random.Random, h: int, w: int) -> np.ndarray:
    """Rectangles on a gradient: edges for canny, grey levels for the rest."""
    image = np.zeros((h, w, 3), np.uint8)
    image[:] = np.linspace(0, 200, w, dtype=np.uint8)[None, :, None]
    for _ in range(rng.randint(1, 3)):
        y, x = rng.randrange(0, h - 8), rng.randrange(0, w - 8)
        image[y: y + rng.randint(6, h // 2), x: x + rng.randint(6, w // 2)] = rng.randrange(256)
    return image


def _drawn_unit(rng: random.Random, models: list[str], own_image: bool) -> dict:
    start = rng.choice((0.0, 0.0, 0.2))
    unit = {"enabled": True, "module": rng.choice(MODULES), "model": rng.choice(models),
            "weight": round(rng.uniform(0.3, 1.5), 2), "guidance_start": start,
            "guidance_end": rng.choice((1.0, 1.0, 0.8)), "control_mode": rng.choice(CONTROL_MODES),
            "resize_mode": rng.choice(RESIZE_MODES), "pixel_perfect": rng.random() < 0.3,
            "processor_res": rng.choice((64, 128))}
    if own_image:
        unit["image"] = to_b64(_scene(rng, *rng.choice(SIZES)))
    return unit


def _drawn_request(rng: random.Random, models: list[str]) -> tuple[str, dict, tuple[int, int]]:
    """(route, payload, (height, width) of the output)."""
    width, height = rng.choice(SIZES)
    img2img = rng.random() < 0.4
    units = [_drawn_unit(rng, models, own_image=not img2img or rng.random() < 0.5)
             for _ in range(rng.choice((1, 1, 2, 3)))]
    fields = dict(width=width, height=height, steps=2 if img2img else rng.choice((1, 2)), seed=rng.randrange(2**31))
    if img2img:
        init = _scene(rng, *rng.choice(SIZES))
        payload = img2img_payload(init, units, resize_mode=rng.choice((0, 1, 2)), **fields)
        return "img2img", payload, (height, width)
    payload = txt2img_payload(units, **fields)
    if rng.random() < 0.25:
        payload.update(enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", hr_second_pass_steps=1,
                       denoising_strength=0.6)
        return "txt2img", payload, (int(height * 1.5) // 8 * 8, int(width * 1.5) // 8 * 8)
    return "txt2img", payload, (height, width)


def _slow_request(models: list[str]) -> dict:
    """A generation long enough to be caught in the middle of sampling (4 steps, one unit)."""
    unit = {"enabled": True, "module": "canny", "model": models[0], "image": to_b64(shapes_image()),
            "processor_res": SIZE}
    return txt2img_payload([unit], steps=4, seed=7)


# --- the faults --------------------------------------------------------------------------------------------------
def client_hangs_up_while_generating(models) -> str:
    """A client sends a generation and closes the connection while it samples; A1111 finishes the job."""
    url = urlparse(A1111_URL)
    body = json.dumps(_slow_request(models)).encode()
    request = (f"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    with socket.create_connection((url.hostname, url.port or 80), timeout=600) as sock:
        sock.sendall(request)
        _wait_until(_sampling, "the hung-up client's generation to sample")
    _wait_until(_idle, "the hung-up client's generation to end")
    return "hang-up"


def interrupt_mid_sampling(models) -> str:
    """/sdapi/v1/interrupt while a unit's generation samples: A1111 stops after the current step and answers with
    the unfinished image."""
    answer: dict = {}

    def send():
        answer["response"] = post("/sdapi/v1/txt2img", _slow_request(models))

    thread = threading.Thread(target=send)
    thread.start()
    try:
        state = _wait_until(_sampling, "the generation to sample")["state"]
        ok_json(post("/sdapi/v1/interrupt", {}))
    finally:
        thread.join(timeout=600)
    assert state["sampling_step"] < state["sampling_steps"], "interrupted after sampling had ended"
    body = ok_json(answer["response"])
    assert body["images"], "an interrupted generation answered without an image"
    return "interrupt"


def last_unit_fails_validation(models, *, _turn=[0]) -> str:  # noqa: B006 - a counter across calls
    """Two good units, then one with a bad field: the request fails naming that unit and field, and the two
    units before it (already parsed, preprocessed and loaded) leave nothing behind."""
    bad_fields = ({"weight": 5.0}, {"image": "not base64!"}, {"model": "no_such_controlnet"})
    bad = bad_fields[_turn[0] % len(bad_fields)]
    _turn[0] += 1
    good = {"enabled": True, "module": "canny", "image": to_b64(shapes_image()), "processor_res": SIZE}
    units = [dict(good, model=models[0]), dict(good, model=models[1], module="invert"),
             dict(good, model=models[0], **bad)]
    response = post("/sdapi/v1/txt2img", txt2img_payload(units, steps=1))
    assert_unit_error(response, 2, next(iter(bad)))
    return f"bad {next(iter(bad))}"


FAULTS = (client_hangs_up_while_generating, interrupt_mid_sampling, last_unit_fails_validation)


def test_a_soak_with_faults_leaves_the_image_without_units_as_it_was(models, plain):
    rng = random.Random(1717)
    statuses, faults, kinds = {}, [], set()
    every = max(1, GENERATIONS // len(FAULTS))  # each fault once over the default 10 generations
    for i in range(GENERATIONS):
        route, payload, (height, width) = _drawn_request(rng, models)
        response = post(f"/sdapi/v1/{route}", payload)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        units = payload["alwayson_scripts"]["controlnet"]["args"]
        described = f"generation {i}: {route} {width}x{height}, units {[(u['module'], u['model']) for u in units]}"
        images = _images(ok_json(response))
        assert images[0].shape == (height, width, 3), described
        maps = len(units) * (2 if payload.get("enable_hr") else 1)  # hires: the hires map and the first pass's
        assert len(images) == 1 + maps, f"{described}: {len(images)} images for {maps} detected maps"
        kinds.add((route, "enable_hr" in payload, len(units)))
        if i % every == every - 1:
            fault = FAULTS[len(faults) % len(FAULTS)]
            faults.append(fault(models))
            again = _images(ok_json(post("/sdapi/v1/txt2img", PLAIN)))[0]
            assert same(again, plain), f"the image without units changed after {faults[-1]} (after {described})"
            assert _idle(_progress()), f"a job is left queued after {faults[-1]}"
    assert set(faults) >= {"hang-up", "interrupt"} and any(f.startswith("bad") for f in faults), faults
    assert {k[0] for k in kinds} == {"txt2img", "img2img"}, kinds
    again = _images(ok_json(post("/sdapi/v1/txt2img", PLAIN)))[0]
    assert same(again, plain), "the image without units changed over the soak"
    state = _progress()["state"]
    assert state["job_count"] == 0 and not state["interrupted"], state
