"""Per-step cost of a T2I-Adapter unit, and what building Control-LoRA weights per call costs.

Part "t2i": full-size SD1.5 UNet (859 M) and a published-size full T2I-Adapter (77 M), fp32 on the CPU, 64x64
latent, batch 2 (one cond row, one uncond row). Each timed call is a step *after* the first of its generation
(the features are made once, at the first step), so the ratio to the no-unit call is what every further step
costs. Target: <= 1.02. Each round times `--steps` such steps per configuration and turns the configurations'
order by one, so no configuration always runs right after the adapter's first step or the printing.

Part "lora": a Control-LoRA (rank 128) on a half-width SD1.5 UNet against the same ControlNet with its weights
merged in advance (W_unet + up·down written out, a full copy): time per forward and the memory each holds.

Configurations are interleaved round by round; figures are medians; both wall-clock and process CPU time are
printed (CPU time is far less disturbed by other processes on a shared machine).
Usage: python bench/bench_t2i_control_lora.py [--part t2i lora] [--rounds 3] [--steps 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.sd15_models import SD15_UNET, sd15_unet  # noqa: E402
from lib_controlnet import BoundUnit, CallInfo, ControlHook, ControlMode, load_control_model  # noqa: E402
from lib_controlnet.kinds.t2i_adapter_unit import AdapterUnit  # noqa: E402


def timed(fn):
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - start_cpu


def report(times: dict, title: str, target: float | None = None) -> None:
    base_name = next(iter(times))
    base_wall = statistics.median(w for w, _ in times[base_name])
    base_cpu = statistics.median(c for _, c in times[base_name])
    print(f"\n{title}\n{'configuration':36s} {'wall s':>7s} {'wall ratio':>10s} {'cpu s':>7s} {'cpu ratio':>9s}")
    for name, values in times.items():
        wall, cpu = statistics.median(w for w, _ in values), statistics.median(c for _, c in values)
        verdict = ""
        if target is not None and name != base_name:
            verdict = "  ok" if cpu / base_cpu <= target else "  OVER"
        print(f"{name:36s} {wall:7.2f} {wall / base_wall:10.3f} {cpu:7.2f} {cpu / base_cpu:9.3f}{verdict}")


def bench_t2i(rounds: int, steps: int) -> None:
    from tests.tiny_kinds import diffusers_t2i, save_t2i_original

    unet = sd15_unet(seed=0)
    with tempfile.TemporaryDirectory() as d:
        adapter = diffusers_t2i(channels=(320, 640, 1280, 1280), seed=1)  # TencentARC's published size
        model = load_control_model(save_t2i_original(adapter, Path(d) / "t2iadapter_depth_sd14v1.safetensors"))
        del adapter
    print(f"UNet {sum(p.numel() for p in unet.parameters()) / 1e6:.1f} M params, "
          f"T2I-Adapter {model.params_m():.1f} M params")
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, 4, 64, 64, generator=g), torch.tensor([500.0, 500.0])
    ctx = torch.randn(2, 77, 768, generator=g)
    hint = torch.rand(1, 3, 512, 512, generator=g)
    info = CallInfo(cond_rows=(0,), fraction=0.5)
    configs = {
        "no unit": None,
        "T2I-Adapter, Balanced": lambda: [AdapterUnit(model, hint)],
        "T2I-Adapter, ControlNet is more imp.": lambda: [AdapterUnit(model, hint, control_mode=ControlMode.CONTROL)],
    }
    times: dict[str, list] = {n: [] for n in configs}
    names = list(configs)
    with torch.no_grad():
        unet(x, t, ctx)  # warm-up
        for rnd in range(rounds):
            for name in names[rnd % len(names):] + names[:rnd % len(names)]:
                units = configs[name]
                if units is None:
                    times[name] += [timed(lambda: unet(x, t, ctx)) for _ in range(steps)]
                    continue
                with ControlHook(unet, units(), lambda *a: info).applied() as hook:
                    unet(x, t, ctx)  # the generation's first step: the features are made here
                    times[name] += [timed(lambda: unet(x, t, ctx)) for _ in range(steps)]
                    assert hook.runs == 1  # and never again
            print(f"round {rnd + 1}/{rounds}: " + ", ".join(
                f"{n}=" + "/".join(f"{w:.2f}" for w, _ in v[-steps:]) + "s" for n, v in times.items()), flush=True)
    report(times, "T2I-Adapter: a step after the first, vs no unit (target <= 1.02)", target=1.02)


def bench_lora(rounds: int) -> None:
    from ldm.modules.diffusionmodules.openaimodel import UNetModel

    from tests.tiny_kinds import control_lora_state_dict, merged_controlnet_state_dict
    from tests.tiny_models import controlnet_state_dict_from_unet

    torch.manual_seed(0)
    unet = UNetModel(**dict(SD15_UNET, model_channels=160)).eval().requires_grad_(False)  # SD1.5 at half width
    lora = control_lora_state_dict(controlnet_state_dict_from_unet(unet, seed=1), rank=128, seed=2, std=0.02)
    merged = merged_controlnet_state_dict(lora, unet.state_dict())
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as d:
        lora_path, merged_path = Path(d) / "control-lora-rank128.safetensors", Path(d) / "merged.safetensors"
        save_file(lora, str(lora_path))
        save_file({"control_model." + k: v.contiguous() for k, v in merged.items()}, str(merged_path))
        del lora, merged
        lora_model = load_control_model(lora_path, base_unet=unet.state_dict(keep_vars=True))
        merged_model = load_control_model(merged_path)
        print(f"files: Control-LoRA {os.path.getsize(lora_path) / 2**20:.0f} MiB, merged ControlNet "
              f"{os.path.getsize(merged_path) / 2**20:.0f} MiB")
    print(f"held in memory: Control-LoRA {lora_model.parameter_bytes() / 2**20:.0f} MiB (+ the host UNet, shared), "
          f"merged copy {merged_model.parameter_bytes() / 2**20:.0f} MiB")
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, 4, 64, 64, generator=g), torch.tensor([500.0, 500.0])
    ctx = torch.randn(2, 77, 768, generator=g)
    hint = torch.rand(1, 3, 512, 512, generator=g)
    configs = {"merged ControlNet (a copy)": merged_model, "Control-LoRA (weights per call)": lora_model}
    times: dict[str, list] = {n: [] for n in configs}
    with torch.no_grad():
        for m in configs.values():
            m(x, hint, t, ctx)  # warm-up
        for rnd in range(rounds):
            for name, m in configs.items():
                times[name].append(timed(lambda m=m: m(x, hint, t, ctx)))
            print(f"round {rnd + 1}/{rounds}: " + ", ".join(f"{n}={v[-1][0]:.2f}s" for n, v in times.items()),
                  flush=True)
        unit = BoundUnit(lora_model, hint)  # and in the hook, one UNet step with the unit
        with ControlHook(unet, [unit], lambda *a: CallInfo(cond_rows=(0,))).applied():
            unet(x, t, ctx)
    report(times, "Control-LoRA forward (batch 2, 64x64 latent) vs the same ControlNet merged in advance")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", nargs="*", default=["t2i", "lora"], choices=["t2i", "lora"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="t2i: timed steps per configuration and round")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    if "t2i" in args.part:
        bench_t2i(args.rounds, args.steps)
    if "lora" in args.part:
        bench_lora(args.rounds)
    print(f"\nload average at the end {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
