"""`python -m lib_controlnet.train.toy STAGE --work-dir DIR`: train the toy base model on rendered scenes.

Stages, each resumable (`--resume`) and seeded:
  vae    the KL autoencoder (DIR/vae/, ending in DIR/vae/vae.safetensors)
  unet   the UNet and the text model together, on the trained VAE's latents (DIR/unet/)
  base   write the SD1.x-layout checkpoint from both (--output, default DIR/toy-shapes-sd15.safetensors)
  all    the three in turn with their default settings (the recipe), each continuing a run it finds in DIR
  controlnet  a canny ControlNet on the base, with the package's trainer (`lib_controlnet.train`), on canny
         pairs of other scenes it writes first (DIR/canny-pairs/, --scenes of them):
         DIR/control_toy-shapes_sd15_canny.safetensors
  sample txt2img on held-out captions with the checkpoint (--output or DIR's): DIR/samples.png (generated
         above rendered) and how often the pictures follow their captions
  curve  control adherence (edge F1 against held-out canny maps) of every ControlNet snapshot the controlnet
         stage kept: DIR/curve.json, DIR/curve.png, and DIR/canny.png (control map, without the unit, with the
         last snapshot)
  embed  copy the checkpoint and the ControlNet into the standalone host's embedded folder (standalone/embedded/)
Progress goes to stderr (a line every 30 s in a log file); each stage ends with a JSON line of its figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from lib_controlnet.errors import ControlNetError, InputError
from standalone.embedded import CHECKPOINT_NAME, CONTROLNET_NAME

CANNY_PAIRS = 2000


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lib_controlnet.train.toy", description=__doc__.split("\n")[0])
    p.add_argument("stage", choices=("vae", "unet", "base", "all", "controlnet", "sample", "curve", "embed"))
    p.add_argument("--work-dir", type=Path, required=True)
    p.add_argument("--steps", type=int, default=None, help="optimizer steps of this stage")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--scenes", type=int, default=None, help="rendered training scenes")
    p.add_argument("--crop", type=int, default=None, help="vae: training crop (px, multiple of 8)")
    p.add_argument("--whole-after", type=int, default=None, help="vae: the step from which it trains on whole images")
    p.add_argument("--save-every", type=int, default=None)
    p.add_argument("--offset-noise", type=float, default=None, help="unet: per-channel noise offset")
    p.add_argument("--high-noise-weight", type=float, default=None, help="unet: the noisy steps' loss weight cap")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, default=None, help="base: the checkpoint to write; sample: to read")
    p.add_argument("--count", type=int, default=16, help="sample, curve: pictures (scenes)")
    p.add_argument("--sample-steps", type=int, default=20, help="sample: sampler steps")
    p.add_argument("--embedded-dir", type=Path, default=None,
                   help="embed: the folder to copy into (default: the host's standalone/embedded/)")
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
        if args.stage == "all":
            for stage in ("vae", "unet", "base"):
                code = main([stage, "--work-dir", str(args.work_dir), "--seed", str(args.seed), "--resume",
                             *(["--output", str(args.output)] if args.output and stage == "base" else [])])
                if code:
                    return code
            return 0
        path, report = run_stage(args)
    except ControlNetError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    report["wall_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(report), file=sys.stderr)
    print(f"wrote {path}")
    return 0


def run_stage(args) -> tuple[Path, dict]:
    if args.stage == "vae":
        from .dataset import SceneSet
        from .vae_training import VAETrainer, VAETraining, load_trained_vae, reconstruction_report

        config = VAETraining(work_dir=args.work_dir / "vae", seed=args.seed, resume=args.resume,
                             **_overrides(args, ("steps", "batch_size", "lr", "scenes", "crop", "whole_after",
                                                 "save_every")))
        trainer = VAETrainer(config)
        path = trainer.train()
        held_out = SceneSet.make(64, trainer.scenes.images.shape[1], seed=args.seed + 1)
        return path, reconstruction_report(load_trained_vae(path), held_out)
    if args.stage == "unet":
        from .unet_training import UNetTraining, train_unet

        config = UNetTraining(work_dir=args.work_dir, seed=args.seed, resume=args.resume,
                              **_overrides(args, ("steps", "batch_size", "lr", "scenes", "save_every",
                                                       "offset_noise", "high_noise_weight")))
        return train_unet(config)
    if args.stage == "base":
        from .unet_training import write_base_checkpoint

        return write_base_checkpoint(args.work_dir, args.output), {}
    if args.stage == "controlnet":
        return train_canny_controlnet(args), {}
    if args.stage == "curve":
        return adherence_curve(args)
    if args.stage == "embed":
        return embed(args.work_dir, args.embedded_dir), {}
    from .base_samples import sample_report

    grid = args.work_dir / "samples.png"
    report = sample_report(args.output or args.work_dir / CHECKPOINT_NAME, grid, count=args.count,
                           steps=args.sample_steps, seed=args.seed)
    return grid, report


def train_canny_controlnet(args) -> Path:
    from ..trainer import ControlNetTraining, train_controlnet
    from .base_model import RESOLUTION
    from .canny_pairs import write_canny_pairs

    data = write_canny_pairs(args.work_dir / "canny-pairs", args.scenes or CANNY_PAIRS)
    defaults = dict(batch_size=8, lr=2e-4, steps=8000, save_every=400)  # the embedded file's run
    defaults.update(_overrides(args, ("batch_size", "lr", "steps", "save_every")))
    config = ControlNetTraining(
        data=data, base=args.output or args.work_dir / CHECKPOINT_NAME, output=args.work_dir / CONTROLNET_NAME,
        resolution=RESOLUTION, sample_every=500, sample_count=4, sample_steps=20, snapshots=True,
        cache_latents=True, precision="fp32", device="cpu", resume=args.resume, seed=args.seed, **defaults)
    return train_controlnet(config)


def adherence_curve(args) -> tuple[Path, dict]:
    from standalone import load_sd_model

    from . import adherence

    base = load_sd_model(args.output or args.work_dir / CHECKPOINT_NAME)
    points, final = adherence.curve(base, controlnet_work_dir(args.work_dir) / "snapshots", count=args.count,
                                    steps=args.sample_steps, seed=args.seed)
    adherence.write_json(points, args.work_dir / "curve.json")
    adherence.plot_curve(points, args.work_dir / "curve.png")
    adherence.picture_grid(final, args.work_dir / "canny.png")
    return args.work_dir / "curve.png", {"points": points, "final": final.report()}


def controlnet_work_dir(work_dir: Path) -> Path:
    """Where the trainer keeps the canny ControlNet's state, samples and snapshots (its default work folder)."""
    return work_dir / (Path(CONTROLNET_NAME).stem + "-training")


def embed(work_dir: Path, root: Path | None = None) -> Path:
    import shutil

    from standalone.embedded import EMBEDDED_DIR, embedded_paths

    target = embedded_paths(root or EMBEDDED_DIR)
    for source, dest in ((work_dir / CHECKPOINT_NAME, target.checkpoint), (work_dir / CONTROLNET_NAME,
                                                                           target.controlnet)):
        if not source.is_file():
            raise InputError(f"{source} does not exist: run stages base and controlnet first", field="work_dir")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
    return target.checkpoint.parent.parent


if __name__ == "__main__":
    sys.exit(main())
