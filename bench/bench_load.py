"""Loading a full-size SD1.5 ControlNet saved as fp16 safetensors (~720 MB): seconds to ready and RSS growth.

RSS is read right after load_control_model returns (weights fully in memory: the reader does not mmap).

The file is written first; then a fresh interpreter loads it with `load_control_model`, so the figures
are not disturbed by the writer's memory. Target: RSS growth / file size <= 1.1 (the weights exist once).
Usage: python bench/bench_load.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time, gc
sys.path.insert(0, sys.argv[2])
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))
import torch
import lib_controlnet
gc.collect()
before = rss()
start = time.perf_counter()
model = lib_controlnet.load_control_model(sys.argv[1])
seconds = time.perf_counter() - start
after = rss()
# ready = able to run: one forward at a tiny size proves every weight is in memory and usable
g = torch.Generator().manual_seed(0)
with torch.no_grad():
    model.to(dtype=torch.float16)
    out = model(torch.randn(1, 4, 8, 8, generator=g), torch.rand(1, 3, 64, 64, generator=g), torch.tensor([1.0]),
                torch.randn(1, 4, 768, generator=g))
ready = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "ready": ready, "rss_growth": after - before, "family": model.family,
                  "params": sum(p.numel() for p in model.net.parameters()),
                  "param_bytes": model.parameter_bytes(), "dtype": str(model.dtype)}))
"""


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from bench.sd15_models import save_sd15_controlnet

    with tempfile.TemporaryDirectory() as d:
        path = save_sd15_controlnet(Path(d) / "control_sd15_random_fp16.safetensors")
        size = os.path.getsize(path)
        runs = []
        for _ in range(3):
            out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(ROOT)], check=True,
                                 capture_output=True, text=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["seconds"])
    print(f"file: {size / 2**20:.0f} MiB fp16, {best['params'] / 1e6:.1f} M params, family {best['family']}, "
          f"loaded as {best['dtype']}")
    for i, r in enumerate(runs, 1):
        growth = r["rss_growth"]
        print(f"run {i}: {r['seconds']:.2f} s loaded, {r['ready']:.2f} s to first residuals, "
              f"RSS growth {growth / 2**20:.0f} MiB = {growth / size:.3f} x file size")
    worst = max(r["rss_growth"] / size for r in runs)
    print(f"worst RSS growth ratio {worst:.3f} (target <= 1.1): {'ok' if worst <= 1.1 else 'OVER'}")


if __name__ == "__main__":
    main()
