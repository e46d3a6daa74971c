"""Sending drawn requests to a running server and keeping score: shared by the CI fuzz test and tools/fuzz_api.py."""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.openapi_strategies import check_response, operation_requests

# routes whose answers are worth sending many requests to (they parse units, images, sliders)
HEAVY = {("post", "/sdapi/v1/txt2img"), ("post", "/sdapi/v1/img2img"), ("post", "/controlnet/detect"),
         ("post", "/controlnet/render_openpose_json")}


def fuzz_route(client, spec: dict, method: str, path: str, *, examples: int, histogram: Counter | None = None,
               seed: int | None = None, refusals: Counter | None = None) -> Counter:
    """Send `examples` drawn requests (clean and mutated) to one route; each must keep `check_response`'s
    contract. Returns (and adds to `histogram`) the count per (route, status); `refusals` counts the 4xx per
    (route, status, field)."""
    histogram = Counter() if histogram is None else histogram
    # one request in three mutated (wrong types anywhere); the others well-typed, so more of them get through
    strategy = st.integers(0, 2).flatmap(lambda i: operation_requests(spec, method, path, mutate=i == 2))

    @settings(max_examples=examples, deadline=None, database=None, derandomize=seed is None,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(request=strategy)
    def run(request):
        query, body = request
        kwargs = {"params": query}
        if body is not None or method == "post":
            kwargs["json"] = body
        response = client.request(method.upper(), path, **kwargs)
        histogram[(f"{method.upper()} {path}", response.status_code)] += 1
        check_response(response)
        if refusals is not None and response.status_code >= 400:
            refusals[(f"{method.upper()} {path}", response.status_code, response.json().get("field"))] += 1

    if seed is not None:
        run = __import__("hypothesis").seed(seed)(run)
    run()
    return histogram
