"""Stable Diffusion checkpoints in the original single-file layout: read, recognise the family, split into parts.

Layouts (what A1111 loads), told apart by their keys alone:
- SD1.x (CompVis ldm): `model.diffusion_model.*` (UNet), `first_stage_model.*` (VAE),
  `cond_stage_model.transformer.*` (CLIP ViT-L/14, Hugging Face names).
- SD2.x (Stability ldm): the same UNet/VAE prefixes, `cond_stage_model.model.*` (OpenCLIP ViT-H/14, open_clip
  names). 512-base predicts the noise (eps), 768-v the velocity (v): see `prediction_type`.
- SDXL (sgm): `model.diffusion_model.*` with `label_emb`, `conditioner.embedders.0.transformer.*` (CLIP ViT-L),
  `conditioner.embedders.1.model.*` (OpenCLIP ViT-bigG with `text_projection`), `first_stage_model.*`.
Other keys (`model_ema.*`, the noise schedule buffers `betas`, `alphas_cumprod`, sgm's `denoiser.sigmas`...)
are not needed: every family uses SD's 1000-step scaled-linear schedule, set in `samplers`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lib_controlnet.errors import ModelFileError
from lib_controlnet.models.files import read_model

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer."  # SD1.x
SD2_TEXT_PREFIX = "cond_stage_model.model."
SDXL_CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
SDXL_CLIP_G_PREFIX = "conditioner.embedders.1.model."

# family -> {text encoder name: its prefix}, in the order their outputs are concatenated
TEXT_ENCODERS: dict[str, dict[str, str]] = {
    "sd1": {"clip_l": TEXT_PREFIX},
    "sd2": {"open_clip_h": SD2_TEXT_PREFIX},
    "sdxl": {"clip_l": SDXL_CLIP_L_PREFIX, "clip_g": SDXL_CLIP_G_PREFIX},
}
FAMILY_NAMES = {"sd1": "SD1.x", "sd2": "SD2.x", "sdxl": "SDXL"}
EPSILON, V_PREDICTION = "epsilon", "v_prediction"

Shapes = Mapping[str, tuple[int, ...]]


class UnsupportedCheckpointError(ModelFileError):
    """A checkpoint we recognise but cannot run here (an SDXL refiner, inpainting UNets...)."""


def _unet_in_channels(shapes: Shapes) -> int | None:
    shape = shapes.get(UNET_PREFIX + "input_blocks.0.0.weight")
    return shape[1] if shape else None


def _has(shapes: Shapes, prefix: str) -> bool:
    return any(k.startswith(prefix) for k in shapes)


def family_of(shapes: Shapes) -> str:
    """sd1 / sd2 / sdxl from the text encoder keys (and the UNet's label_emb); sd1 when nothing says otherwise."""
    if _has(shapes, "conditioner.embedders.") or UNET_PREFIX + "label_emb.0.0.weight" in shapes:
        return "sdxl"
    if _has(shapes, SD2_TEXT_PREFIX):
        return "sd2"
    return "sd1"


@dataclass(frozen=True)
class RefusalRule:
    matches: Callable[[Shapes, str], bool]
    message: Callable[[str], str]


def _missing_text_encoder(shapes: Shapes, family: str) -> str | None:
    return next((p for p in TEXT_ENCODERS[family].values() if not _has(shapes, p)), None)


# Checked in order; the first that matches refuses the file with its message.
REFUSALS: tuple[RefusalRule, ...] = (
    RefusalRule(
        lambda s, f: not _has(s, UNET_PREFIX) and _has(s, "control_model."),
        lambda f: "is a ControlNet model, not a Stable Diffusion checkpoint: put it in the ControlNet models folder",
    ),
    RefusalRule(
        lambda s, f: not _has(s, UNET_PREFIX),
        lambda f: f"is not a Stable Diffusion checkpoint in the original single-file layout (no '{UNET_PREFIX}*' "
                  "keys; diffusers folders are not supported by the standalone host)",
    ),
    RefusalRule(
        # sd_xl_refiner: one OpenCLIP bigG embedder at index 0 and size/aesthetic-score conditioning
        lambda s, f: f == "sdxl" and _has(s, "conditioner.embedders.0.model."),
        lambda f: "is an SDXL refiner checkpoint, which refines another model's latents; the standalone host "
                  "runs base checkpoints only (use it as A1111's refiner)",
    ),
    RefusalRule(
        lambda s, f: _missing_text_encoder(s, f) is not None,
        lambda f: f"has no {FAMILY_NAMES[f]} text encoder ('{{prefix}}*' keys)",
    ),
    RefusalRule(
        lambda s, f: not _has(s, VAE_PREFIX),
        lambda f: f"has no VAE ('{VAE_PREFIX}*' keys); checkpoints without a baked-in VAE are not supported yet",
    ),
    RefusalRule(
        lambda s, f: _unet_in_channels(s) not in (None, 4),
        lambda f: "has a UNet with extra input channels (an inpainting, depth or instruct-pix2pix model), which "
                  f"the standalone host does not run yet; use a regular {FAMILY_NAMES[f]} checkpoint",
    ),
)


def detect_family(shapes: Shapes) -> str:
    """'sd1', 'sd2' or 'sdxl' for a checkpoint we can run; otherwise UnsupportedCheckpointError says what it is."""
    family = family_of(shapes)
    for rule in REFUSALS:
        if rule.matches(shapes, family):
            message = rule.message(family).replace("{prefix}", _missing_text_encoder(shapes, family) or "")
            raise UnsupportedCheckpointError(message)
    return family


@dataclass
class Checkpoint:
    """A checkpoint split into its parts, each with its prefix removed."""

    path: Path
    family: str
    unet: dict[str, torch.Tensor]
    vae: dict[str, torch.Tensor]
    text_encoders: dict[str, dict[str, torch.Tensor]]  # TEXT_ENCODERS[family] order
    unused_keys: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    prediction_type: str | None = None  # None: the file does not say (see sd_model for SD2.x)

    @property
    def text_encoder(self) -> dict[str, torch.Tensor]:
        """The first (SD1.x: the only) text encoder."""
        return next(iter(self.text_encoders.values()))


def split_parts(state_dict: Mapping[str, torch.Tensor], family: str = "sd1") -> tuple[dict, dict, dict, list[str]]:
    prefixes = {"unet": UNET_PREFIX, "vae": VAE_PREFIX, **TEXT_ENCODERS[family]}
    parts: dict[str, dict] = {name: {} for name in prefixes}
    unused = []
    for key, value in state_dict.items():
        for name, prefix in prefixes.items():
            if key.startswith(prefix):
                parts[name][key[len(prefix) :]] = value
                break
        else:
            unused.append(key)
    texts = {name: parts[name] for name in TEXT_ENCODERS[family]}
    return parts["unet"], parts["vae"], texts, unused


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a `.safetensors` (or `.ckpt` with weights_only) SD checkpoint; refuse what we cannot run."""
    raw = read_model(path)
    if raw.config:
        raise UnsupportedCheckpointError(f"{raw.path.name}: diffusers folders are not supported by the standalone "
                                         "host; use a single-file checkpoint")
    shapes = {k: tuple(v.shape) for k, v in raw.state_dict.items()}
    try:
        family = detect_family(shapes)
    except UnsupportedCheckpointError as e:
        raise UnsupportedCheckpointError(f"{raw.path.name} {e.message}") from None
    unet, vae, texts, unused = split_parts(raw.state_dict, family)
    metadata = read_metadata(raw.path)
    return Checkpoint(raw.path, family, unet, vae, texts, unused, metadata,
                      declared_prediction_type(shapes, metadata, raw.path))


def declared_prediction_type(shapes: Shapes, metadata: Mapping[str, str], path: Path) -> str | None:
    """What the file itself says it predicts: a `v_pred` key (ComfyUI's marker), the safetensors metadata
    `modelspec.prediction_type` (Stability's model spec), or a `parameterization: "v"` line in the A1111 config
    `<name>.yaml` beside it. None when none of them is there."""
    if "v_pred" in shapes:
        return V_PREDICTION
    declared = str(metadata.get("modelspec.prediction_type", "")).strip().lower()
    if declared in ("v", "v_prediction", "v-prediction"):
        return V_PREDICTION
    if declared in ("epsilon", "eps"):
        return EPSILON
    config = path.with_suffix(".yaml")
    if config.is_file():
        try:
            text = config.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        for line in text.splitlines():
            key, _, value = line.strip().partition(":")
            if key == "parameterization":
                return V_PREDICTION if value.strip().strip("\"'") == "v" else EPSILON
    return None


def read_metadata(path: Path) -> dict[str, str]:
    """The safetensors header's `__metadata__` (the demo model marks itself there); {} for other files."""
    if path.suffix.lower() != ".safetensors":
        return {}
    try:
        with open(path, "rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    except (OSError, ValueError):
        return {}
    meta = header.get("__metadata__") or {}
    return {str(k): str(v) for k, v in meta.items()}
