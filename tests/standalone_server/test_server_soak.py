"""The standalone host soaked with faults injected between generations (tests/fuzz/soak.py), bounded for CI:
random units, modes, sizes, img2img and hires fix; a model file truncated and one replaced on disk, a preprocessor
that raises, an interrupt mid-step, an exception inside the ControlNet forward, clients that hang up. After each,
the UNet's modules, forwards, hooks and weights are exactly as before; afterwards a plain generation gives the
same image as before the soak. Timings and RSS are measured by tools/soak.py, not asserted here."""

from __future__ import annotations

import gc
import os
import shutil
import weakref

from tests.fuzz.soak import PLAIN, Soak
from tests.standalone_server.server_helpers import body, ok, png_b64, square

GENERATIONS = int(os.environ.get("CN_SOAK_GENERATIONS", "7"))  # each fault once


def test_generations_with_faults_leave_the_unet_and_the_image_as_they_were(client, service):
    before = ok(client.post("/sdapi/v1/txt2img", json=PLAIN))["images"][0]
    soak = Soak(client, service, seed=17)
    try:
        soak.run(GENERATIONS)
    finally:
        soak.close()
    assert set(soak.faults) == {f.__name__ for f in soak._fault_cycle}, soak.faults
    assert ok(client.post("/sdapi/v1/txt2img", json=PLAIN))["images"][0] == before
    assert soak.statuses[200] >= GENERATIONS
    assert soak.statuses[500] == soak.faults["raising_preprocessor"] + soak.faults["raising_controlnet_forward"]


def test_cycling_three_models_through_a_cache_of_two_frees_the_evicted_ones(client, service):
    demo = next(e for e in service.models.entries() if e.stem.startswith("demo"))
    folder = demo.path.parent
    copies = [folder / f"soak-cycle-{i}.safetensors" for i in range(3)]
    for path in copies:
        shutil.copyfile(demo.path, path)
    service.models.refresh()
    alive = []
    try:
        for path in (*copies, copies[0]):  # the first is evicted by the third, then loaded again
            unit = {"enabled": True, "module": "canny", "model": path.stem, "image": png_b64(square())}
            ok(client.post("/sdapi/v1/txt2img", json=body(unit, steps=1)))
            alive.append(weakref.ref(service.model_cache.get(path).net))
        gc.collect()
        assert len(service.model_cache) <= service.model_cache.capacity == 2
        assert sum(ref() is not None for ref in alive) <= 2  # evicted networks are really gone
    finally:
        for path in copies:
            path.unlink()
        service.models.refresh()
