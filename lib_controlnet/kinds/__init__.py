"""The model-kind registry: each kind turns a detected state dict into a runnable model.

`models.detection.FORMAT_RULES` says which kind claims a state dict; `BUILDERS[kind]` builds it. A new kind
(T2I-Adapter, Control-LoRA...) adds a rule there, a module here that registers its builder, and its network
under `models/networks/`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

Builder = Callable[[Any, Any, "Mapping[str, torch.Tensor] | None"], Any]  # (Detection, RawModel, base_unet)
BUILDERS: dict[str, Builder] = {}


def register(kind: str):
    def wrap(fn: Builder) -> Builder:
        BUILDERS[kind] = fn
        return fn

    return wrap


# Each kind registers itself on import.
from . import controlnet  # noqa: E402, F401
