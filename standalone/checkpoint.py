"""Stable Diffusion checkpoints in the original single-file layout: read, recognise, split into parts.

Layout (CompVis/ldm, what A1111 loads): `model.diffusion_model.*` (UNet), `first_stage_model.*` (VAE) and
`cond_stage_model.transformer.*` (SD1.x's CLIP ViT-L/14 text encoder, Hugging Face names). Other keys
(`model_ema.*`, the noise schedule buffers `betas`, `alphas_cumprod`, ...) are not needed: the schedule is
SD1.5's, set in `samplers`. Only SD1.x runs here; SDXL and SD2.x are recognised and refused by name.
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
TEXT_PREFIX = "cond_stage_model.transformer."

Shapes = Mapping[str, tuple[int, ...]]


class UnsupportedCheckpointError(ModelFileError):
    """A checkpoint we recognise but cannot run here (SDXL, SD2.x, inpainting UNets...)."""


def _context_dim(shapes: Shapes) -> int | None:
    key = next((k for k in shapes if k.startswith(UNET_PREFIX) and k.endswith("attn2.to_k.weight")), None)
    return shapes[key][1] if key else None


def _unet_in_channels(shapes: Shapes) -> int | None:
    shape = shapes.get(UNET_PREFIX + "input_blocks.0.0.weight")
    return shape[1] if shape else None


@dataclass(frozen=True)
class RefusalRule:
    matches: Callable[[Shapes], bool]
    message: str


# Checked in order; the first that matches refuses the file with its message.
REFUSALS: tuple[RefusalRule, ...] = (
    RefusalRule(
        lambda s: any(k.startswith("conditioner.embedders.") for k in s) or UNET_PREFIX + "label_emb.0.0.weight" in s,
        "is an SDXL checkpoint; the standalone host runs SD1.x checkpoints only for now (SDXL is a planned "
        "follow-up)",
    ),
    RefusalRule(
        lambda s: any(k.startswith("cond_stage_model.model.") for k in s) or _context_dim(s) == 1024,
        "is an SD2.x checkpoint (OpenCLIP ViT-H text encoder); the standalone host runs SD1.x checkpoints only",
    ),
    RefusalRule(
        lambda s: not any(k.startswith(UNET_PREFIX) for k in s) and any(k.startswith("control_model.") for k in s),
        "is a ControlNet model, not a Stable Diffusion checkpoint: put it in the ControlNet models folder",
    ),
    RefusalRule(
        lambda s: not any(k.startswith(UNET_PREFIX) for k in s),
        f"is not a Stable Diffusion checkpoint in the original single-file layout (no '{UNET_PREFIX}*' keys; "
        "diffusers folders are not supported by the standalone host)",
    ),
    RefusalRule(
        lambda s: not any(k.startswith(TEXT_PREFIX) for k in s),
        f"has no SD1.x text encoder ('{TEXT_PREFIX}*' keys)",
    ),
    RefusalRule(
        lambda s: not any(k.startswith(VAE_PREFIX) for k in s),
        f"has no VAE ('{VAE_PREFIX}*' keys); checkpoints without a baked-in VAE are not supported yet",
    ),
    RefusalRule(
        lambda s: _unet_in_channels(s) not in (None, 4),
        "has a UNet with extra input channels (an inpainting or instruct-pix2pix model), which the standalone "
        "host does not run yet; use a regular SD1.x checkpoint",
    ),
)


def detect_family(shapes: Shapes) -> str:
    """'sd1' for a checkpoint we can run; anything else raises UnsupportedCheckpointError saying what it is."""
    for rule in REFUSALS:
        if rule.matches(shapes):
            raise UnsupportedCheckpointError(rule.message)
    return "sd1"


@dataclass
class Checkpoint:
    """An SD1.x checkpoint split into its three parts, each with its prefix removed."""

    path: Path
    family: str
    unet: dict[str, torch.Tensor]
    vae: dict[str, torch.Tensor]
    text_encoder: dict[str, torch.Tensor]
    unused_keys: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)


def split_parts(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict, dict, dict, list[str]]:
    parts: tuple[dict, dict, dict] = ({}, {}, {})
    unused = []
    for key, value in state_dict.items():
        for prefix, part in zip((UNET_PREFIX, VAE_PREFIX, TEXT_PREFIX), parts):
            if key.startswith(prefix):
                part[key[len(prefix) :]] = value
                break
        else:
            unused.append(key)
    return (*parts, unused)


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
    unet, vae, text, unused = split_parts(raw.state_dict)
    return Checkpoint(raw.path, family, unet, vae, text, unused, read_metadata(raw.path))


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
