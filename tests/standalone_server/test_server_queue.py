"""One generation at a time: progress reports the step, interrupt stops the running job (not the next one),
preprocessor previews answer while a generation runs, and generations never overlap."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.standalone_server.server_helpers import body, info, ok, png_b64, square, unit

LONG_STEPS = 1000  # far more than the test waits for: only an interrupt ends it in time
WAIT_S = 60


def wait_for(client, predicate, what: str) -> dict:
    """Poll /sdapi/v1/progress (bounded) until `predicate(progress)`."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        progress = client.get("/sdapi/v1/progress").json()
        if predicate(progress):
            return progress
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=3) as executor:
        yield executor


def test_progress_reports_the_step_and_interrupt_stops_only_the_running_job(client, pool):
    long = pool.submit(client.post, "/sdapi/v1/txt2img", json=body(unit(), steps=LONG_STEPS, seed=7))
    try:
        running = wait_for(client, lambda p: p["state"]["sampling_step"] >= 2, "the long job to sample")
        state = running["state"]
        assert state["job"] == "scripts_txt2img" and state["job_count"] == 1
        assert state["sampling_steps"] == LONG_STEPS and not state["interrupted"]
        assert 0 < running["progress"] < 0.5 and running["eta_relative"] > 0

        queued = pool.submit(client.post, "/sdapi/v1/txt2img", json=body(steps=2))
        wait_for(client, lambda p: "1 request(s) waiting" in (p["textinfo"] or ""), "the second job to queue")
        wait_for(client, lambda p: p["state"]["sampling_step"] > state["sampling_step"], "the step to advance")
        assert not queued.done()
    finally:
        assert client.post("/sdapi/v1/interrupt").json() == {}
    interrupted = ok(long.result(timeout=WAIT_S))
    assert info(interrupted)["interrupted"] is True
    assert len(interrupted["images"]) == 2  # the image as it was, and the unit's map
    second = ok(queued.result(timeout=WAIT_S))
    assert info(second)["interrupted"] is False and info(second)["steps"] == 2
    idle = client.get("/sdapi/v1/progress").json()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0


def test_interrupt_with_nothing_running_changes_nothing(client):
    assert client.post("/sdapi/v1/interrupt").json() == {}
    assert info(ok(client.post("/sdapi/v1/txt2img", json=body(steps=2))))["interrupted"] is False


def test_detect_answers_while_a_generation_runs(client, pool):
    long = pool.submit(client.post, "/sdapi/v1/txt2img", json=body(steps=LONG_STEPS))
    try:
        wait_for(client, lambda p: p["state"]["sampling_step"] >= 1, "the generation to sample")
        response = client.post("/controlnet/detect", json={"controlnet_module": "canny",
                                                           "controlnet_input_images": [png_b64(square())]})
        assert response.status_code == 200 and len(response.json()["images"]) == 1
        still = client.get("/sdapi/v1/progress").json()["state"]
        assert still["job_count"] == 1 and still["sampling_steps"] == LONG_STEPS  # the generation did not end first
    finally:
        client.post("/sdapi/v1/interrupt")
        ok(long.result(timeout=WAIT_S))


def test_generations_never_overlap(client, service, pool, monkeypatch):
    active, peak, lock = [0], [0], threading.Lock()
    generate = service.pipeline.generate

    def counted(*args, **kwargs):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.2)  # long enough for the others to arrive
            return generate(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(service.pipeline, "generate", counted)
    futures = [pool.submit(client.post, "/sdapi/v1/txt2img", json=body(steps=2, seed=s)) for s in (1, 2, 3)]
    seeds = sorted(info(ok(f.result(timeout=WAIT_S)))["seed"] for f in futures)
    assert seeds == [1, 2, 3]
    assert peak[0] == 1


def test_a_waiting_request_can_be_interrupted_by_its_task_id(client, pool):
    long = pool.submit(client.post, "/sdapi/v1/txt2img", json=body(steps=LONG_STEPS, force_task_id="task(long)"))
    try:
        wait_for(client, lambda p: p["state"]["sampling_step"] >= 1, "the long job to sample")
        waiting = pool.submit(client.post, "/sdapi/v1/txt2img", json=body(steps=2, force_task_id="task(waits)"))
        behind = pool.submit(client.post, "/sdapi/v1/txt2img", json=body(steps=2, seed=5))
        wait_for(client, lambda p: "2 request(s) waiting" in (p["textinfo"] or ""), "two jobs to queue")
        assert client.post("/sdapi/v1/interrupt", params={"task_id": "task(waits)"}).json() == {}
        cancelled = waiting.result(timeout=WAIT_S)  # answered at once, while the long job still runs
        assert cancelled.status_code == 409
        assert cancelled.json()["task_id"] == "task(waits)" and "waited in the queue" in cancelled.json()["detail"]
        progress = wait_for(client, lambda p: "1 request(s) waiting" in (p["textinfo"] or ""), "the queue to shrink")
        assert progress["state"]["sampling_steps"] == LONG_STEPS and not progress["state"]["interrupted"]
        missing = client.post("/sdapi/v1/interrupt", params={"task_id": "task(nobody)"})
        assert missing.status_code == 404 and "task(nobody)" in missing.json()["detail"]
    finally:
        client.post("/sdapi/v1/interrupt", params={"task_id": "task(long)"})
    assert info(ok(long.result(timeout=WAIT_S)))["interrupted"] is True
    after = ok(behind.result(timeout=WAIT_S))  # the job behind the cancelled one still ran, uninterrupted
    assert info(after)["interrupted"] is False and info(after)["seed"] == 5
