"""Union units sharing ONE forward vs one forward each; same-file ControlNet units batched vs apart.

A full-size SDXL ControlNet Union (xinsir's published config: 1.25 B params, 6 task slots) with random
weights, on the CPU, 64x64 latent, batch 2 (one cond row, one uncond row), run through the units' own code
(`UnionUnit.contribute_group` on a `UNetCall`, exactly what the hook does per UNet call):

- union, k = 2 and 3 units: fused (one forward with k hints) vs apart (k single-hint forwards);
- plain ControlNet, 2 units of one file: batched (one forward over 4 rows, `batch_same_model`) vs apart.

Per UNet call ("step") the encoded / fused hints are cached (they see no timestep), as in a generation; the
first call of a generation, which computes them, is timed separately. Configurations are interleaved
round by round so machine noise hits them alike; figures are medians over rounds. Wall and process CPU
time are both printed (CPU time is steadier on a shared machine); peak memory is the rise of the process's
peak RSS (VmHWM, reset before each measurement) over the resident size before it.

Usage: python bench/bench_union.py [--rounds 2] [--dtype float32|bfloat16] [--first] [--tiny]
Needs ~5.5 GB free in float32 (2.8 GB in bfloat16): check `free -g` first.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib_controlnet.enums import UnionControlType as T  # noqa: E402
from lib_controlnet.hook.call import CallInfo, UNetCall  # noqa: E402
from lib_controlnet.kinds.controlnet_union import UnionModel  # noqa: E402
from lib_controlnet.kinds.controlnet_unit import BoundUnit  # noqa: E402
from lib_controlnet.kinds.union_unit import UnionUnit  # noqa: E402
from lib_controlnet.memory import Placement  # noqa: E402
from lib_controlnet.models.detection import detect  # noqa: E402
from lib_controlnet.models.networks.controlnet_union import ControlNetUnion, UnionSpec  # noqa: E402

SDXL_BASE = dict(in_channels=4, conditioning_channels=3, block_out_channels=(320, 640, 1280), layers_per_block=2,
                 cross_attention_dim=2048, attention_head_dim=(5, 10, 20), use_linear_projection=True,
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 transformer_layers_per_block=(0, 2, 10), conditioning_embedding_out_channels=(16, 32, 96, 256),
                 num_control_type=6, num_trans_channel=320, num_trans_head=8, num_trans_layer=1,
                 num_proj_channel=320)
TINY = dict(SDXL_BASE, block_out_channels=(64, 128, 128), cross_attention_dim=64, attention_head_dim=(1, 2, 2),
            addition_time_embed_dim=8, projection_class_embeddings_input_dim=56, transformer_layers_per_block=(0, 1, 1),
            num_trans_channel=64, num_proj_channel=64)
TYPES = (T.DEPTH, T.HARD_EDGE, T.OPENPOSE)


def union_model(config: dict, dtype: torch.dtype, seed: int = 0) -> UnionModel:
    """Random weights in the published layout: shapes from diffusers on the meta device, our network."""
    from diffusers import ControlNetUnionModel

    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in ControlNetUnionModel(**config).state_dict().items()}
    det = detect(shapes, config)
    spec = UnionSpec.from_shapes({det.key_map[k]: v for k, v in shapes.items()}, config["num_trans_head"])
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in the bench dtype: no float32 copy on the way (5 GB at full size)
    try:
        net = ControlNetUnion(det.arch, spec)
    finally:
        torch.set_default_dtype(previous)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32).mul_(0.02 if p.ndim > 1 else 0.01))
    return UnionModel(net, family=det.family, path=Path("random_union_sdxl.safetensors"), format=det.format,
                      global_average_pooling=False, variant=det.variant)


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure(fn):
    """(wall s, cpu s, peak RSS rise in MiB) of one call."""
    can_reset = reset_peak()
    before = rss_kib("VmRSS")
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    peak = (rss_kib("VmHWM") - before) / 1024 if can_reset else float("nan")
    return wall, cpu, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--tiny", action="store_true", help="a tiny config, to check the script runs")
    parser.add_argument("--first", action="store_true", help="also time each configuration's first call")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    config = TINY if args.tiny else SDXL_BASE

    model = union_model(config, dtype)
    params = sum(p.numel() for p in model.net.parameters())
    print(f"ControlNet Union {params / 1e9:.3f} B params, {args.dtype}, {torch.get_num_threads()} threads")

    g = torch.Generator().manual_seed(1)
    latent = 16 if args.tiny else 64
    x = torch.randn(2, 4, latent, latent, generator=g).to(dtype)
    t = torch.tensor([500.0, 500.0])
    ctx = torch.randn(2, 77, config["cross_attention_dim"], generator=g).to(dtype)
    y = torch.randn(2, config["projection_class_embeddings_input_dim"], generator=g).to(dtype)
    hints = [torch.rand(1, 3, latent * 8, latent * 8, generator=g) for _ in TYPES]
    placement = Placement(torch.device("cpu"), dtype)
    info = CallInfo(cond_rows=(0,), fraction=0.5)

    def call():
        return UNetCall(x, t, ctx, y, info, num_outputs=10, placement=placement)

    def union_units(k):
        return [UnionUnit(model, hints[i], control_type=TYPES[i], weight=1.0 - 0.1 * i, index=i) for i in range(k)]

    def plain_units():  # the same network driven as a plain ControlNet (no task: its head costs ~nothing)
        return [BoundUnit(model, hints[i], weight=1.0 - 0.1 * i, index=i, batch_same_model=True) for i in range(2)]

    def fused(units):
        UnionUnit.contribute_group(units, call())

    def apart(units):
        c = call()
        for u in units:
            u.contribute(c)

    def batched(units):
        BoundUnit.contribute_group(units, call())

    configs = {
        "union k=2 fused (1 forward)": (fused, lambda: union_units(2)),
        "union k=2 apart (2 forwards)": (apart, lambda: union_units(2)),
        "union k=3 fused (1 forward)": (fused, lambda: union_units(3)),
        "union k=3 apart (3 forwards)": (apart, lambda: union_units(3)),
        "plain x2 batched (1 forward, 4 rows)": (batched, plain_units),
        "plain x2 apart (2 forwards, 2 rows)": (apart, plain_units),
    }
    first: dict[str, tuple] = {}
    steps: dict[str, list[tuple]] = {name: [] for name in configs}
    with torch.no_grad():
        units_of = {}
        for name, (run, make) in configs.items():  # first call of a generation: hints encoded and fused
            units_of[name] = make()
            runs = placement.runs
            if args.first:
                first[name] = measure(lambda run=run, units=units_of[name]: run(units))
            else:  # fill the caches
                run(units_of[name])
            print(f"first call  {name}: {placement.runs - runs} forward(s)"
                  + (f", {first[name][0]:.2f}s wall, {first[name][1]:.2f}s cpu" if args.first else ""), flush=True)
        for rnd in range(args.rounds):
            for name, (run, _) in configs.items():
                steps[name].append(measure(lambda run=run, units=units_of[name]: run(units)))
            print(f"round {rnd + 1}/{args.rounds}: " + ", ".join(f"{n.split(' (')[0]}={v[-1][1]:.2f}s cpu"
                                                                 for n, v in steps.items()), flush=True)

    def med(name, i):
        return statistics.median(v[i] for v in steps[name])

    print(f"\n{'per UNet call (hints cached)':38s} {'wall s':>7s} {'cpu s':>7s} {'peak MiB':>9s}")
    for name in configs:
        print(f"{name:38s} {med(name, 0):7.2f} {med(name, 1):7.2f} {med(name, 2):9.0f}")
    print("\nratios, one forward / apart (target for union k=2: <= 0.6 of the k passes)")
    for one, many in (("union k=2 fused (1 forward)", "union k=2 apart (2 forwards)"),
                      ("union k=3 fused (1 forward)", "union k=3 apart (3 forwards)"),
                      ("plain x2 batched (1 forward, 4 rows)", "plain x2 apart (2 forwards, 2 rows)")):
        ratios = [med(one, i) / med(many, i) if med(many, i) else float("nan") for i in range(3)]
        first_cpu = f"; first call {first[one][1] / first[many][1]:.3f} cpu" if args.first else ""
        print(f"{one.split(' (')[0]:20s} time {ratios[0]:.3f} wall, {ratios[1]:.3f} cpu; peak memory "
              f"{ratios[2]:.3f}{first_cpu}")


if __name__ == "__main__":
    main()
