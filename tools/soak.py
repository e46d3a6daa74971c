"""The long soak of the standalone host, with the figures the CI test does not assert (tests/fuzz/soak.py).

    .venv/bin/python tools/soak.py                    # 100 generations with faults, then 50 cycling 3 models

1. Before: a plain generation (no unit) and its sampling-step time (median interval between steps, in process),
   after `--warmup` untimed runs. On a machine shared with other jobs the after/before ratio (3.) is the load's,
   not the soak's (one process with no soak at all drifted 35-65 ms a step over 60 runs here).
2. `--generations` random generations over loopback HTTP with every fault injected in turn; after each, the
   UNet's modules, forwards, hooks and weights are compared with the snapshot taken before.
3. After: the plain generation again (the same image?) and its step time; the ratio after/before; and the soaked
   service against a fresh load of the same checkpoint, timed in turns (pairs see the same load): the measure.
4. `--cycle` generations cycling 3 ControlNet files through the model cache (size 2): RSS after each; first
   (after the first cycle) and last, and their ratio.
Prints the figures and `uptime` (the machine's load makes step times noisy). Exit status 1 when a check failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def step_time(service, repeats: int, steps: int) -> float:
    """Median seconds between two sampling steps of the plain generation, over `repeats` runs."""
    from standalone.server.schemas import Txt2ImgBody
    from tests.fuzz.soak import PLAIN

    intervals = []
    for _ in range(repeats):
        stamps: list[float] = []
        body = Txt2ImgBody(**dict(PLAIN, steps=steps))
        service.run(body, on_progress=lambda p, s=stamps: s.append(time.perf_counter()))
        intervals += [b - a for a, b in zip(stamps, stamps[1:])]
    return statistics.median(intervals)


def interleaved_ratio(soaked, fresh, repeats: int, steps: int) -> float:
    """Median of (soaked step time / fresh step time), the two measured one after the other, `repeats` times:
    the machine's load drifts, but alike for both halves of a pair."""
    ratios = []
    for _ in range(repeats):
        ratios.append(step_time(soaked, 1, steps) / step_time(fresh, 1, steps))
    return statistics.median(ratios)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--cycle", type=int, default=50, help="generations cycling 3 models (cache size 2)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--demo", default="sd15", help="demo model to serve (sd15: the random one the tests use)")
    parser.add_argument("--timing-repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=5, help="untimed plain runs before the first timing")
    args = parser.parse_args(argv)

    import httpx
    import torch
    import uvicorn

    from standalone.server import ServerConfig, build_app
    from tests.fuzz.soak import PLAIN, Soak, png_b64, scene, structure_diff, unet_structure

    torch.set_num_threads(1)
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        app = build_app(ServerConfig(models_dir=Path(tmp), demo=args.demo))
        service = app.state.service
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
                plain_before = client.post("/sdapi/v1/txt2img", json=PLAIN).json()["images"][0]
                if args.warmup:
                    step_time(service, args.warmup, 10)
                step_before = step_time(service, args.timing_repeats, 10)
                rss_start = rss_mib()

                soak = Soak(client, service, seed=args.seed)
                began = time.monotonic()
                try:
                    soak.run(args.generations)
                except AssertionError as exc:
                    failures.append(f"soak: {exc}")
                finally:
                    soak.close()
                soak_s = time.monotonic() - began

                plain_after = client.post("/sdapi/v1/txt2img", json=PLAIN).json()["images"][0]
                step_after = step_time(service, args.timing_repeats, 10)
                # the same checkpoint loaded afresh (never hooked), timed in turns with the soaked one
                from standalone.server.checkpoints import load_checkpoint
                from standalone.server.service import GenerationService

                fresh = GenerationService(service.config, load_checkpoint(Path(tmp), demo=args.demo))
                versus_fresh = interleaved_ratio(service, fresh, args.timing_repeats, 10)
                del fresh
                if plain_after != plain_before:
                    failures.append("the plain generation changed after the soak")

                # 50 generations cycling 3 models through the cache of 2
                demo = next(e for e in service.models.entries() if e.stem.startswith("demo"))
                copies = [demo.path.parent / f"soak-rss-{i}.safetensors" for i in range(3)]
                for path in copies:
                    shutil.copyfile(demo.path, path)
                service.models.refresh()
                service.model_cache.set_capacity(2)
                import random

                rng = random.Random(args.seed)
                rss = []
                baseline = unet_structure(service.checkpoint.model.unet)
                try:
                    for i in range(args.cycle):
                        unit = {"enabled": True, "module": "canny", "model": copies[i % 3].stem,
                                "image": png_b64(scene(rng, 64, 64))}
                        body = dict(PLAIN, seed=i, alwayson_scripts={"controlnet": {"args": [unit]}})
                        response = client.post("/sdapi/v1/txt2img", json=body)
                        if response.status_code != 200:
                            failures.append(f"cycle {i}: {response.status_code}")
                        rss.append(rss_mib())
                    changes = structure_diff(baseline, unet_structure(service.checkpoint.model.unet))
                    if changes:
                        failures.append("cycle: " + "; ".join(changes[:5]))
                finally:
                    for path in copies:
                        path.unlink()
                    service.models.refresh()
        finally:
            server.should_exit = True
            thread.join(timeout=30)

    ratio = step_after / step_before
    first, last = rss[min(2, len(rss) - 1)], rss[-1]
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"machine: {load}")
    print(f"soak: {args.generations} random generations in {soak_s:.0f} s; statuses "
          + ", ".join(f"{s}: {n}" for s, n in sorted(soak.statuses.items())))
    print("faults injected: " + ", ".join(f"{k} x{n}" for k, n in sorted(soak.faults.items()))
          + f" ({sum(soak.faults.values())} in all); hires fix in the mix: {soak.hires}")
    print("UNet structure after every step: " + ("unchanged" if not any(f.startswith("soak") for f in failures)
                                                 else "CHANGED"))
    print(f"plain generation after the soak: {'the same image' if plain_after == plain_before else 'DIFFERENT'}")
    print(f"step time: before {step_before * 1000:.2f} ms, after {step_after * 1000:.2f} ms, ratio {ratio:.4f} "
          f"(median of {args.timing_repeats} x 9 intervals); soaked / a fresh load of the same checkpoint, timed "
          f"in turns: {versus_fresh:.4f} (median of {args.timing_repeats} pairs)")
    print(f"RSS over {args.cycle} generations cycling 3 models (cache 2): first {first:.0f} MiB (after the first "
          f"cycle), last {last:.0f} MiB, ratio {last / first:.4f}; min {min(rss):.0f}, max {max(rss):.0f}; "
          f"at the start of the soak {rss_start:.0f} MiB")
    for failure in failures:
        print("FAILED:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    sys.exit(main())
