"""`python -m lib_controlnet.train.toy STAGE --work-dir DIR`: train the toy base model on rendered scenes.

Stages, each resumable (`--resume`) and seeded:
  vae    the KL autoencoder (DIR/vae/, ending in DIR/vae/vae.safetensors)
  unet   the UNet and the text model together, on the trained VAE's latents (DIR/unet/)
  base   write the SD1.x-layout checkpoint from both (--output, default DIR/toy-shapes-sd15.safetensors)
Progress goes to stderr (a line every 30 s in a log file).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from lib_controlnet.errors import ControlNetError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lib_controlnet.train.toy", description=__doc__.split("\n")[0])
    p.add_argument("stage", choices=("vae", "unet", "base"))
    p.add_argument("--work-dir", type=Path, required=True)
    p.add_argument("--steps", type=int, default=None, help="optimizer steps of this stage")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--scenes", type=int, default=None, help="rendered training scenes")
    p.add_argument("--crop", type=int, default=None, help="vae: training crop (px, multiple of 8)")
    p.add_argument("--save-every", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, default=None, help="base: the checkpoint to write")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p


def _overrides(args, names) -> dict:
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.monotonic()
    try:
        if args.stage == "vae":
            from .vae_training import VAETrainer, VAETraining, reconstruction_report

            config = VAETraining(work_dir=args.work_dir / "vae", seed=args.seed, resume=args.resume,
                                 **_overrides(args, ("steps", "batch_size", "lr", "scenes", "crop", "save_every")))
            trainer = VAETrainer(config)
            path = trainer.train()
            from .dataset import SceneSet
            from .vae_training import load_trained_vae

            held_out = SceneSet.make(64, trainer.scenes.images.shape[1], seed=args.seed + 1)
            report = reconstruction_report(load_trained_vae(path), held_out)
        elif args.stage == "unet":
            from .unet_training import UNetTraining, train_unet

            config = UNetTraining(work_dir=args.work_dir, seed=args.seed, resume=args.resume,
                                  **_overrides(args, ("steps", "batch_size", "lr", "scenes", "save_every")))
            path, report = train_unet(config)
        else:
            from .unet_training import write_base_checkpoint

            path = write_base_checkpoint(args.work_dir, args.output)
            report = {}
    except ControlNetError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    report["wall_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(report), file=sys.stderr)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
