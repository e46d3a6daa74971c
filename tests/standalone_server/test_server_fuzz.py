"""The standalone host under fuzzed requests drawn from its own OpenAPI document (tests/fuzz): every route answers
without a 5xx and without dropping the connection, every 4xx in the one {detail, error, field} shape, and
afterwards the server still generates the same image as before. Bounded for CI (about 30 s); the long run is
tools/fuzz_api.py."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.fuzz.harness import HEAVY, fuzz_route
from tests.fuzz.openapi_strategies import operations
from tests.fuzz.unit_strategies import examples
from tests.standalone_server.server_helpers import body, ok, png_b64, square, unit

ROUTES = [
    ("get", "/controlnet/control_types"), ("get", "/controlnet/model_list"), ("get", "/controlnet/module_list"),
    ("get", "/controlnet/settings"), ("get", "/controlnet/version"), ("post", "/controlnet/detect"),
    ("post", "/controlnet/render_openpose_json"), ("post", "/sdapi/v1/img2img"), ("post", "/sdapi/v1/interrupt"),
    ("get", "/sdapi/v1/options"), ("get", "/sdapi/v1/progress"), ("get", "/sdapi/v1/samplers"),
    ("get", "/sdapi/v1/sd-models"), ("post", "/sdapi/v1/txt2img"), ("get", "/simple"), ("get", "/standalone/info"),
]
HISTOGRAM: Counter = Counter()


@pytest.fixture(scope="module")
def spec(client):
    return client.get("/openapi.json").json()


@pytest.fixture(scope="module")
def before(client):
    return ok(client.post("/sdapi/v1/txt2img", json=body(unit(), steps=2)))["images"][0]


def test_every_published_route_is_fuzzed(spec):
    assert sorted(operations(spec)) == sorted(ROUTES)


@pytest.mark.parametrize("method, path", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_a_route_keeps_its_contract_under_fuzzed_requests(client, spec, before, method, path):
    fuzz_route(client, spec, method, path, examples=examples(60 if (method, path) in HEAVY else 8),
               histogram=HISTOGRAM)


def test_the_server_is_unchanged_after_the_fuzz(client, before):
    assert HISTOGRAM, "the fuzz ran first"
    assert ok(client.post("/sdapi/v1/txt2img", json=body(unit(), steps=2)))["images"][0] == before
    assert client.get("/sdapi/v1/progress").json()["state"]["job_count"] == 0


# --- what the fuzz found (each answered a 5xx, or took the server down, before) --------------------------------
@pytest.mark.parametrize("route, fields, field", [
    ("/sdapi/v1/txt2img", dict(batch_size=10**6), "batch_size"),  # allocated at once: the process died
    ("/sdapi/v1/txt2img", dict(n_iter=0), "n_iter"),  # was reported as batch_size
    ("/sdapi/v1/img2img", dict(mask_blur=10**9), "mask_blur"),  # OpenCV kernel overflow: 500
    ("/sdapi/v1/img2img", dict(mask_blur_x=10**6), "mask_blur"),  # a blur running for hours
])
def test_costly_or_overflowing_values_are_refused(client, route, fields, field):
    extra = {} if route.endswith("txt2img") else {"init_images": [png_b64(square())], "mask": png_b64(square())}
    response = client.post(route, json=body(**extra, **fields))
    assert response.status_code == 422 and response.json()["field"] == field, response.text


@pytest.mark.parametrize("value", [1e300, float("nan"), float("inf")])
def test_an_openpose_keypoint_that_is_no_position_is_refused(client, value):
    pose = {"people": [{"pose_keypoints_2d": [10, value, 1]}], "canvas_width": 64, "canvas_height": 64}
    response = client.post("/controlnet/render_openpose_json", json=[pose])  # OpenCV failed inside: 500
    assert response.status_code == 422
    assert response.json()["field"] == "pose_data[0].people[0].pose_keypoints_2d"


@pytest.mark.parametrize("route, text, field", [
    ("/sdapi/v1/txt2img", '"eta": -Infinity', "eta"),  # accepted, generated, then the echo failed to render: 500
    ("/sdapi/v1/txt2img", '"refiner_switch_at": NaN', "refiner_switch_at"),
    ("/sdapi/v1/txt2img", '"override_settings": {"eta_noise_seed_delta": Infinity}',
     "override_settings.eta_noise_seed_delta"),
    ("/sdapi/v1/img2img", '"comments": {"a": [1, NaN]}', "comments.a[1]"),
])
def test_a_number_that_is_not_finite_is_refused_naming_the_field(client, route, text, field):
    extra = {} if route.endswith("txt2img") else {"init_images": [png_b64(square())]}
    raw = json.dumps(body(**extra, steps=1))[:-1] + ", " + text + "}"
    response = client.post(route, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and response.json()["field"] == field, response.text
