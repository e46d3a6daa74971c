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

    The result has `.kind` ("controlnet", "controlnet_union", "control_lora", "t2i_adapter",
    "t2i_style_adapter") and `.family`. `base_unet` (the host UNet's state dict, ldm key names) is needed for
    "difference" ControlNets and Control-LoRAs; pass `unet.state_dict(keep_vars=True)` so that a Control-LoRA
    reads the live parameters (it holds them weakly and copies nothing).
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
