"""`python -m lib_controlnet.train DATA --base CKPT --output FILE`: train a ControlNet on image pairs.

DATA is a folder in the original tutorial's layout (prompt.json lines with source, target, prompt; see
`pairs`). Progress (loss) goes to stderr; the work folder (default: next to the output) gets the state to
`--resume` from, sample grids (control | generated | target) and, with `--snapshots`, one ControlNet file per
save. The output is a ControlNet in the original layout that `python launch.py` and A1111 load like any other.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from lib_controlnet.errors import ControlNetError

from .controlnet_init import PUBLISHED_HINT_WIDTHS
from .loop import PRECISIONS
from .trainer import ControlNetTraining, train_controlnet


def parser() -> argparse.ArgumentParser:
    d = ControlNetTraining.__dataclass_fields__
    p = argparse.ArgumentParser(prog="python -m lib_controlnet.train",
                                description="Train a ControlNet on (control, target, prompt) triples on top of a "
                                            "frozen SD1.x checkpoint.")
    p.add_argument("data", type=Path, help="folder with prompt.json, source/ and target/ (the tutorial's layout)")
    p.add_argument("--base", type=Path, required=True, help="the SD1.x checkpoint to train on (kept frozen)")
    p.add_argument("--output", type=Path, required=True, help="the ControlNet .safetensors to write")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="state, samples and snapshots (default: <output>-training next to the output)")
    p.add_argument("--resolution", type=int, default=d["resolution"].default, help="square training size (px)")
    p.add_argument("--batch-size", type=int, default=d["batch_size"].default)
    p.add_argument("--grad-accum", type=int, default=d["grad_accum"].default,
                   help="micro-batches summed per optimizer step (effective batch = batch size x this)")
    p.add_argument("--lr", type=float, default=d["lr"].default, help="AdamW learning rate")
    p.add_argument("--weight-decay", type=float, default=d["weight_decay"].default)
    p.add_argument("--max-grad-norm", type=float, default=d["max_grad_norm"].default, help="0: no clipping")
    p.add_argument("--steps", type=int, default=d["steps"].default, help="optimizer steps in all")
    p.add_argument("--prompt-dropout", type=float, default=d["prompt_dropout"].default,
                   help="share of samples trained with the empty prompt (the paper: 0.5)")
    p.add_argument("--seed", type=int, default=d["seed"].default)
    p.add_argument("--save-every", type=int, default=d["save_every"].default, help="steps between checkpoints")
    p.add_argument("--sample-every", type=int, default=d["sample_every"].default,
                   help="steps between sample grids (0: none)")
    p.add_argument("--sample-count", type=int, default=d["sample_count"].default)
    p.add_argument("--sample-steps", type=int, default=d["sample_steps"].default)
    p.add_argument("--snapshots", action="store_true", help="keep a ControlNet file at every checkpoint")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: fp32 on CPU, mixed precision (bf16, else fp16 with loss scaling) on a GPU")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--hint-widths", type=int, nargs=7, default=list(PUBLISHED_HINT_WIDTHS), metavar="W",
                   help="the hint encoder's 7 conv widths (default: the published 16 16 32 32 96 96 256)")
    p.add_argument("--cache-latents", action="store_true", help="encode every target once, up front")
    p.add_argument("--save-dtype", choices=("fp16", "fp32"), default="fp16")
    p.add_argument("--resume", action="store_true", help="continue the run saved in the work folder")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = ControlNetTraining(
        data=args.data, base=args.base, output=args.output, work_dir=args.work_dir, resolution=args.resolution,
        batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr, weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm or None, steps=args.steps, prompt_dropout=args.prompt_dropout,
        seed=args.seed, save_every=args.save_every, sample_every=args.sample_every,
        sample_count=args.sample_count, sample_steps=args.sample_steps, snapshots=args.snapshots,
        precision=args.precision, device=args.device, hint_widths=tuple(args.hint_widths),
        cache_latents=args.cache_latents, save_dtype=args.save_dtype, resume=args.resume,
    )
    try:
        path = train_controlnet(config)
    except ControlNetError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
