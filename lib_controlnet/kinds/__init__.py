"""The model-kind registry: each kind turns a detected state dict into a runnable model and a unit.

`models.detection.FORMAT_RULES` says which kind claims a state dict; `BUILDERS[kind]` builds the model and
`UNITS[kind]` is the unit class (an `hook.effect.Effect`) that applies it to the UNet. A new kind
(T2I-Adapter, Control-LoRA...) adds a rule there, a module here that registers both, and its network under
`models/networks/`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

Builder = Callable[[Any, Any, "Mapping[str, torch.Tensor] | None"], Any]  # (Detection, RawModel, base_unet)
BUILDERS: dict[str, Builder] = {}
UNITS: dict[str, type] = {}


def register(kind: str, *, unit: type):
    def wrap(fn: Builder) -> Builder:
        BUILDERS[kind] = fn
        UNITS[kind] = unit
        return fn

    return wrap


def unit_class(kind: str) -> type:
    """The unit class that applies models of `kind` (every registered kind has one)."""
    return UNITS[kind]


# Each kind registers itself on import.
from . import control_lora, controlnet, controlnet_union, ip_adapter, t2i_adapter  # noqa: E402, F401
