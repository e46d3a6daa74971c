"""Cost of the model-free and post-UNet controls per UNet call, as ratios taken side by side in one run.

fp32 CPU, batch 2 (one cond row, one uncond row), 64x64 latent; configurations interleaved round by round and
the medians of process CPU time compared (far less disturbed by other processes than wall time):

    reference_only / reference_adain+attn   vs no unit     floor: 2.0 (one extra UNet pass on the batch), plus
                                                            the concatenated attention; printed as measured
    tile_colorfix + tile ControlNet          vs the tile ControlNet alone      target <= 1.02

The VAE is a fixed 8x8-mean stand-in (the controls encode their image once per generation, not per call).
Usage: python bench/bench_controls.py [--rounds 3] [--small]   (--small: a reduced UNet for a quick look)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.sd15_models import SD15_UNET, save_sd15_controlnet, sd15_unet  # noqa: E402
from lib_controlnet import BoundUnit, CallInfo, ControlHook, load_control_model  # noqa: E402
from lib_controlnet.controls import ControlRequest, build  # noqa: E402
from lib_controlnet.hook.host import HostInfo, sd_alphas_cumprod  # noqa: E402
from lib_controlnet.preprocessors.declaration import Params  # noqa: E402


def encode(pixels01: torch.Tensor) -> torch.Tensor:
    pooled = F.avg_pool2d(pixels01 * 2 - 1, 8)
    return torch.cat([pooled, pooled[:, :1]], dim=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="model_channels 64 instead of SD1.5's 320")
    args = parser.parse_args()

    if args.small:
        from ldm.modules.diffusionmodules.openaimodel import UNetModel

        torch.manual_seed(0)
        unet = UNetModel(**{**SD15_UNET, "model_channels": 64}).eval().requires_grad_(False)
        tile = None
    else:
        unet = sd15_unet(seed=0)
        with tempfile.TemporaryDirectory() as d:
            tile = load_control_model(save_sd15_controlnet(Path(d) / "tile.safetensors", seed=1))
        tile.to(dtype=torch.float32)
    host = HostInfo(alphas_cumprod=sd_alphas_cumprod(), encode_image=encode)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 64, 64, generator=g)
    t = torch.tensor([500.0, 500.0])
    ctx = torch.randn(2, 77, 768, generator=g)
    image = (torch.rand(512, 512, 3, generator=g) * 255).byte().numpy()
    hint = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    info = CallInfo(cond_rows=(0,), fraction=0.5)

    def controls(module, control):
        req = ControlRequest(index=0, module=module, params=Params(slider_1=8.0, slider_2=1.0), maps=[image])
        return build(control, req).effects

    configs = {
        "no unit": lambda: [],
        "reference_only": lambda: controls("reference_only", "reference"),
        "reference_adain+attn": lambda: controls("reference_adain+attn", "reference"),
    }
    if tile is not None:
        configs["tile ControlNet"] = lambda: [BoundUnit(tile, hint)]
        configs["tile ControlNet + colorfix"] = lambda: [BoundUnit(tile, hint), *controls("tile_colorfix", "colorfix")]
    cpu: dict[str, list[float]] = {name: [] for name in configs}
    with torch.no_grad():
        unet(x, t, ctx)  # warm-up
        for rnd in range(args.rounds):
            for name, units in configs.items():
                with ControlHook(unet, units(), lambda *a: info, host=host).applied():
                    unet(x, t, ctx)  # the first call encodes nothing per call; time the second
                    start = time.process_time()
                    unet(x, t, ctx)
                    cpu[name].append(time.process_time() - start)
            print(f"round {rnd + 1}/{args.rounds}: " + ", ".join(f"{n}={v[-1]:.2f}s" for n, v in cpu.items()),
                  flush=True)
    base = statistics.median(cpu["no unit"])
    print(f"\n{'configuration':30s} {'cpu s':>7s} {'vs no unit':>10s}")
    for name, values in cpu.items():
        print(f"{name:30s} {statistics.median(values):7.2f} {statistics.median(values) / base:10.3f}")
    if tile is not None:
        ratio = statistics.median(cpu["tile ControlNet + colorfix"]) / statistics.median(cpu["tile ControlNet"])
        print(f"\ncolorfix over the tile unit alone: {ratio:.3f} (target <= 1.02)")
    print("reference floor: 2.0 (one extra UNet pass on the batch)")


if __name__ == "__main__":
    main()
