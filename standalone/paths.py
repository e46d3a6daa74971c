"""Where the standalone host keeps things by default (all under the models folder, git-ignored)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = REPO_ROOT / "models"


def checkpoint_dir(models_dir: Path) -> Path:
    return models_dir / "Stable-diffusion"  # A1111's folder name, so users can copy a setup over


def controlnet_dir(models_dir: Path) -> Path:
    return models_dir / "ControlNet"


def demo_dir(models_dir: Path) -> Path:
    """Generated random-weight demo models; laid out like `models_dir` (Stable-diffusion/, ControlNet/)."""
    return models_dir / "demo"


def tokenizer_dir(models_dir: Path) -> Path:
    """vocab.json/merges.txt derived from the installed CLIP BPE file (see clip_vocab)."""
    return models_dir / "cache" / "clip-vit-large-patch14-tokenizer"
