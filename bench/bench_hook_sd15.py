"""Cost of the hook on a full-size SD1.5 UNet: time per UNet call as a ratio to the call with no unit.

fp32 on the CPU, 64x64 latent, batch 2 (one cond row, one uncond row). Configurations are interleaved
round by round so that machine noise hits them alike; each figure is the median over rounds, divided by
the no-unit median of the same run. Both wall-clock and process CPU time are measured: CPU time is far
less disturbed by other processes on a shared machine, and the verdict uses it.
Printed beside the FLOP ratio from torch.utils.flop_counter and the issue's targets:
    Balanced            <= 1.02 x (1 + F_cn/F_unet)
    ControlNet priority <= 1.02 x (1 + 0.5 F_cn/F_unet)   (the ControlNet runs on the cond row only)
    outside its range   <= 1.01
Usage: python bench/bench_hook_sd15.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.sd15_models import save_sd15_controlnet, sd15_unet  # noqa: E402
from lib_controlnet import BoundUnit, CallInfo, ControlHook, ControlMode, load_control_model  # noqa: E402


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=None,
                        help="configurations to time besides 'no unit', by their first word (e.g. Balanced ControlNet)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    unet = sd15_unet(seed=0)
    with tempfile.TemporaryDirectory() as d:
        model = load_control_model(save_sd15_controlnet(Path(d) / "cn_sd15.safetensors", seed=1))
    model.to(dtype=torch.float32)
    print(f"UNet {sum(p.numel() for p in unet.parameters()) / 1e6:.1f} M params, "
          f"ControlNet {sum(p.numel() for p in model.net.parameters()) / 1e6:.1f} M params")

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 64, 64, generator=g)
    t = torch.tensor([500.0, 500.0])
    ctx = torch.randn(2, 77, 768, generator=g)
    hint = torch.rand(1, 3, 512, 512, generator=g)
    info = CallInfo(cond_rows=(0,), fraction=0.5)

    def unit(**kw):
        return BoundUnit(model, hint, **kw)

    configs = {
        "no unit": [],
        "Balanced": [unit()],
        "My prompt is more important": [unit(control_mode=ControlMode.PROMPT)],
        "ControlNet is more important": [unit(control_mode=ControlMode.CONTROL)],
        "outside its range (end 0.4)": [unit(guidance_end=0.4)],
        "two units (Balanced x2)": [unit(), unit(weight=0.5)],
    }

    if args.only:
        configs = {n: u for n, u in configs.items() if n == "no unit" or n.split()[0] in args.only}

    with torch.no_grad():
        f_unet = flops(lambda: unet(x, t, ctx))
        f_cn = flops(lambda: model(x, hint, t, ctx))
    r = f_cn / f_unet
    print(f"FLOPs per call (batch 2): UNet {f_unet / 1e12:.3f} T, ControlNet {f_cn / 1e12:.3f} T, ratio {r:.3f}")

    times: dict[str, list[float]] = {name: [] for name in configs}
    cpu: dict[str, list[float]] = {name: [] for name in configs}
    cn_cpu: dict[int, list[float]] = {1: [], 2: []}
    with torch.no_grad():
        unet(x, t, ctx)  # warm-up
        for rnd in range(args.rounds):
            for name, units in configs.items():
                hook = ControlHook(unet, units, lambda *a: info)
                with hook.applied():
                    start, start_cpu = time.perf_counter(), time.process_time()
                    unet(x, t, ctx)
                    times[name].append(time.perf_counter() - start)
                    cpu[name].append(time.process_time() - start_cpu)
            for rows in (1, 2):  # the ControlNet alone: how much of its batch-2 cost one row takes on this CPU
                start_cpu = time.process_time()
                model(x[:rows], hint, t[:rows], ctx[:rows])
                cn_cpu[rows].append(time.process_time() - start_cpu)
            print(f"round {rnd + 1}/{args.rounds}: " + ", ".join(f"{n}={v[-1]:.2f}s" for n, v in times.items()),
                  flush=True)

    base = statistics.median(times["no unit"])
    base_cpu = statistics.median(cpu["no unit"])
    targets = {
        "Balanced": 1.02 * (1 + r),
        "My prompt is more important": 1.02 * (1 + r),
        "ControlNet is more important": 1.02 * (1 + 0.5 * r),
        "outside its range (end 0.4)": 1.01,
        "two units (Balanced x2)": 1.02 * (1 + 2 * r),
    }
    print(f"\n{'configuration':34s} {'wall s':>7s} {'wall ratio':>10s} {'cpu s':>7s} {'cpu ratio':>9s} "
          f"{'FLOP ratio':>10s} {'target':>7s}")
    flop_ratio = {"no unit": 1.0, "Balanced": 1 + r, "My prompt is more important": 1 + r,
                  "ControlNet is more important": 1 + r / 2, "outside its range (end 0.4)": 1.0,
                  "two units (Balanced x2)": 1 + 2 * r}
    for name, values in times.items():
        med, med_cpu = statistics.median(values), statistics.median(cpu[name])
        target = targets.get(name)
        verdict = "" if target is None else ("  ok" if med_cpu / base_cpu <= target else "  OVER")
        print(f"{name:34s} {med:7.2f} {med / base:10.3f} {med_cpu:7.2f} {med_cpu / base_cpu:9.3f} "
              f"{flop_ratio[name]:10.3f} {'' if target is None else f'{target:7.3f}'}{verdict}")
    cn1, cn2 = statistics.median(cn_cpu[1]), statistics.median(cn_cpu[2])
    print(f"\nControlNet alone, cpu s: 1 row {cn1:.2f}, 2 rows {cn2:.2f} (1 row costs {cn1 / cn2:.3f} of 2 rows, "
          f"FLOPs say 0.500).\nFrom these measured costs, with zero hook overhead: Balanced "
          f"{1 + cn2 / base_cpu:.3f}, ControlNet-priority {1 + cn1 / base_cpu:.3f}.")


if __name__ == "__main__":
    main()
