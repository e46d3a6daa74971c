"""Which SD checkpoint the server runs: `--demo NAME` (the embedded toy, or a random-weight demo), `--ckpt`, else
the first usable one (SD1.x, SD2.x or SDXL) in models/Stable-diffusion, else the embedded toy model (trained here
on coloured shapes, with its canny ControlNet; see standalone/embedded.py). One checkpoint per server: switching
needs a restart."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from lib_controlnet.errors import ControlNetError

from ..demo import ensure_demo_models
from ..embedded import TOY_NOTICE, embedded_paths
from ..paths import checkpoint_dir, controlnet_dir
from ..sd_model import StableDiffusionModel, load_sd_model

logger = logging.getLogger("standalone.server")
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")


@dataclass
class LoadedCheckpoint:
    model: StableDiffusionModel
    controlnet_dirs: list[Path]  # where this checkpoint's ControlNet models are looked for
    skipped: list[str] = field(default_factory=list)  # "<file>: why" for checkpoints that were not usable

    @property
    def is_demo(self) -> bool:
        return self.model.is_demo

    @property
    def notice(self) -> str | None:
        return self.model.notice


def checkpoint_files(models_dir: Path) -> list[Path]:
    folder = checkpoint_dir(models_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES)


def load_checkpoint(models_dir: Path, ckpt: Path | None = None, extra_controlnet_dirs=(),
                    demo: str | None = None) -> LoadedCheckpoint:
    """Load `ckpt` (errors propagate: the user asked for that file), the `demo` asked for, or pick one as the
    module doc says."""
    dirs = [controlnet_dir(models_dir), *map(Path, extra_controlnet_dirs)]
    if demo is not None:
        return _load_demo(models_dir, dirs, [], demo)
    if ckpt is not None:
        return LoadedCheckpoint(load_sd_model(ckpt, models_dir=models_dir), dirs)
    skipped = []
    for path in checkpoint_files(models_dir):
        try:
            model = load_sd_model(path, models_dir=models_dir)
        except ControlNetError as exc:  # SDXL, SD2, not a checkpoint...: say why and try the next
            skipped.append(f"{path.name}: {exc.message}")
            logger.warning("Skipping checkpoint %s: %s", path.name, exc.message)
            continue
        return LoadedCheckpoint(model, dirs, skipped)
    logger.warning("No usable checkpoint in %s: using the embedded toy model. %s", checkpoint_dir(models_dir),
                   TOY_NOTICE)
    return _load_demo(models_dir, dirs, skipped, "toy")


def _load_demo(models_dir: Path, dirs: list[Path], skipped: list[str], family: str = "sd15") -> LoadedCheckpoint:
    """`toy`: the embedded trained model (read in place); `sd15` / `sdxl`: a random-weight demo (written once)."""
    if family == "toy" and not embedded_paths().exist():
        logger.warning("The embedded toy model is missing from %s (an incomplete checkout?): using the random-weight "
                       "SD1.x demo instead", embedded_paths().checkpoint.parent.parent)
        family = "sd15"
    demo = embedded_paths() if family == "toy" else ensure_demo_models(models_dir, family)
    # the demo ControlNet matches only the demo UNet, so its folder is listed only while that demo runs
    return LoadedCheckpoint(load_sd_model(demo.checkpoint, models_dir=models_dir),
                            [*dirs, demo.controlnet.parent], skipped)
