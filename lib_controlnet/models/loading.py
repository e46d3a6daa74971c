"""`load_control_model`: file -> detected, built, ready model. No cache here (see model_cache)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from ..errors import ControlNetError, ModelFileError
from ..kinds import BUILDERS
from ..kinds.controlnet import ControlModel
from .detection import detect
from .files import read_model


def load_control_model(
    path: str | os.PathLike, *, base_unet: Mapping[str, torch.Tensor] | None = None
) -> ControlModel:
    """Load a control model from a `.safetensors`/`.pth`/`.ckpt`/`.bin` file or a diffusers folder.

    `base_unet` (the host UNet's state dict, ldm key names) is needed only for "difference" ControlNets.
    """
    raw = read_model(path)
    try:
        shapes = {k: tuple(v.shape) for k, v in raw.state_dict.items()}
        det = detect(shapes, raw.config)
        return BUILDERS[det.kind](det, raw, base_unet)
    except ControlNetError as e:
        if raw.path.name not in e.message:
            e.message = f"{raw.path.name}: {e.message}"
            e.refresh()
        raise
    except (KeyError, ValueError, IndexError) as e:
        raise ModelFileError(f"{raw.path.name}: malformed control model ({e!r})") from e
