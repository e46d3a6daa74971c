"""Cost of one SDXL ControlNet unit (full, mid, small) per UNet call, as a ratio to the call with no unit.

The UNet is the standalone host's sgm-layout SDXL UNet (`standalone.sgm_unet`, sd_xl_base.yaml's layout:
depths 0/2/10, 10 in the middle, context 2048, y 2816) and the ControlNets are the published SDXL full / mid /
small layouts (diffusers' controlnet-*-sdxl-1.0{,-mid,-small} configs, converted to the original layout), all
with random weights. Configurations are interleaved round by round so machine noise hits them alike; each
figure is the median over rounds divided by the no-unit median of the same run, for wall-clock and process
CPU time (CPU time is far less disturbed by other processes on a shared machine). Printed beside the FLOP
ratio 1 + F_cn / F_unet from torch.utils.flop_counter (the target: within a few % of it).

Full size (--width-scale 1) is 2.6 B UNet parameters (10 GB in fp32) plus 1.25 B for the full ControlNet:
more than a shared 24 GB machine should hold, and minutes per call on 2 CPU cores. The default is a reduced
run: every layer and depth of the published layouts at 0.4 of the widths (model_channels 128, 64-wide heads),
latent 64x64 (512x512 pixels), batch 2 (one cond, one uncond row), float32.

Usage: python bench/bench_hook_sdxl.py [--rounds 3] [--width-scale 0.4] [--latent 64] [--dtype float32]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib_controlnet import BoundUnit, CallInfo, ControlHook, load_control_model  # noqa: E402
from lib_controlnet.models.conversion.diffusers_controlnet import diffusers_to_ldm_names  # noqa: E402
from lib_controlnet.models.networks.arch import arch_from_shapes  # noqa: E402
from lib_controlnet.models.networks.controlnet import ControlNet  # noqa: E402
from standalone.sgm_unet import SgmUNet, sdxl_base_layout  # noqa: E402

# diffusers' published SDXL ControlNet configs (controlnet-canny-sdxl-1.0, -mid, -small)
SDXL_CN = dict(in_channels=4, conditioning_channels=3, layers_per_block=2, cross_attention_dim=2048,
               use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
               projection_class_embeddings_input_dim=2816)
VARIANTS = {
    "full": dict(down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 transformer_layers_per_block=(0, 2, 10)),
    "mid": dict(down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
                transformer_layers_per_block=(0, 0, 1)),
    "small": dict(down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D"),
                  transformer_layers_per_block=(0, 0, 0), mid_block_type="UNetMidBlock2D"),
}


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def controlnet_file(variant: str, mc: int, folder: Path, seed: int) -> Path:
    """A ControlNet of the published layout (names via diffusers' config on the meta device), random weights."""
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    widths = (mc, 2 * mc, 4 * mc)
    config = dict(SDXL_CN, **VARIANTS[variant], block_out_channels=widths,
                  attention_head_dim=tuple(max(1, w // 64) for w in widths))
    with torch.device("meta"):
        reference = ControlNetModel(**config)
    ref = reference.state_dict()
    shapes = {new: tuple(ref[old].shape) for old, new in diffusers_to_ldm_names(ref).items()}
    torch.manual_seed(seed)
    net = ControlNet(replace(arch_from_shapes(shapes), head_dim=64))
    path = folder / f"bench-controlnet-sdxl-{variant}.safetensors"
    save_file({"control_model." + k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--width-scale", type=float, default=0.4, help="fraction of SDXL's widths (1 = full size)")
    parser.add_argument("--latent", type=int, default=64, help="latent side (image side / 8)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    mc = int(round(320 * args.width_scale / 32)) * 32

    torch.manual_seed(0)
    unet = SgmUNet(sdxl_base_layout(model_channels=mc)).eval().requires_grad_(False).to(dtype)
    models = {}
    with tempfile.TemporaryDirectory() as d:
        for i, variant in enumerate(VARIANTS):
            models[variant] = load_control_model(controlnet_file(variant, mc, Path(d), seed=i + 1))
            models[variant].to(dtype=dtype)
    params = {n: sum(p.numel() for p in m.net.parameters()) / 1e6 for n, m in models.items()}
    print(f"model_channels {mc} ({args.width_scale:g} of SDXL), latent {args.latent}x{args.latent}, batch 2, "
          f"{args.dtype}, torch threads {torch.get_num_threads()}")
    print(f"UNet {sum(p.numel() for p in unet.parameters()) / 1e6:.1f} M params; ControlNets "
          + ", ".join(f"{n} {p:.1f} M" for n, p in params.items()))

    g = torch.Generator().manual_seed(0)
    lat = args.latent
    x = torch.randn(2, 4, lat, lat, generator=g).to(dtype)
    t = torch.tensor([500.0, 500.0])
    ctx = torch.randn(2, 77, 2048, generator=g).to(dtype)
    y = torch.randn(2, 2816, generator=g).to(dtype)
    hint = torch.rand(1, 3, lat * 8, lat * 8, generator=g)
    info = CallInfo(cond_rows=(0,), fraction=0.5)

    with torch.no_grad():
        f_unet = flops(lambda: unet(x, t, ctx, y))
        # per step: the hint encoder's output is computed once per generation and cached, so it is left out
        guided = {n: m.encode_hint(hint.to(dtype)) for n, m in models.items()}
        f_cn = {n: flops(lambda m=m, n=n: m(x, None, t, ctx, y, guided_hint=guided[n])) for n, m in models.items()}
    print(f"FLOPs per call (batch 2): UNet {f_unet / 1e12:.3f} T; "
          + ", ".join(f"{n} ControlNet {f / 1e12:.3f} T ({f / f_unet:.3f} of the UNet)" for n, f in f_cn.items()))

    configs = {"no unit": None, **{f"one {n} unit": models[n] for n in VARIANTS}}
    times: dict[str, list[float]] = {name: [] for name in configs}
    cpu: dict[str, list[float]] = {name: [] for name in configs}
    with torch.no_grad():
        unet(x, t, ctx, y)  # warm-up
        for rnd in range(args.rounds):
            for name, model in configs.items():
                units = [] if model is None else [BoundUnit(model, hint)]
                hook = ControlHook(unet, units, lambda *a: info, family="sdxl")
                with hook.applied():
                    if model is not None:
                        units[0].guided_hint(x, None)  # the hint encoder runs once per generation, not per step
                    start, start_cpu = time.perf_counter(), time.process_time()
                    unet(x, t, ctx, y)
                    times[name].append(time.perf_counter() - start)
                    cpu[name].append(time.process_time() - start_cpu)
            print(f"round {rnd + 1}/{args.rounds}: " + ", ".join(f"{n}={v[-1]:.2f}s" for n, v in times.items()),
                  flush=True)

    base, base_cpu = statistics.median(times["no unit"]), statistics.median(cpu["no unit"])
    print(f"\n{'configuration':18s} {'wall s':>7s} {'wall ratio':>10s} {'cpu s':>7s} {'cpu ratio':>9s} "
          f"{'FLOP ratio':>10s} {'cpu/FLOP':>8s}")
    for name, values in times.items():
        med, med_cpu = statistics.median(values), statistics.median(cpu[name])
        variant = name.split()[1] if name != "no unit" else None
        flop_ratio = 1.0 if variant is None else 1 + f_cn[variant] / f_unet
        print(f"{name:18s} {med:7.2f} {med / base:10.3f} {med_cpu:7.2f} {med_cpu / base_cpu:9.3f} "
              f"{flop_ratio:10.3f} {med_cpu / base_cpu / flop_ratio:8.3f}")


if __name__ == "__main__":
    main()
