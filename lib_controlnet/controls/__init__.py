"""Hook-side controls that are not a model kind: what some preprocessors do besides (or instead of) a
ControlNet — reference-only attention, tile colorfix and inpaint_only corrections after each UNet call,
recolor and the inpaint_only paste-back on the decoded pixels.

A preprocessor names its control in its declaration (`Preprocessor(control="colorfix")`); `build` turns
the prepared unit into the effects the hook applies and the pixel post-processes the host runs after
decoding. Model-free preprocessors (reference_*) get their whole unit from here; the others keep their
ControlNet unit and gain these beside it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..enums import ControlMode, HiResFixOption
from ..hook.effect import Effect
from ..hook.host import HostInfo
from ..preprocessors.declaration import Params

# [3, H, W] float image in [0, 1] and its index in the batch -> the same, post-processed
PixelPost = Callable[[torch.Tensor, int], torch.Tensor]
# the first pass's initial noise [B, 4, h, w] (unit variance) and the host's model -> the noise to sample from
NoiseModifier = Callable[[torch.Tensor, "HostInfo"], torch.Tensor]


@dataclass
class ControlRequest:
    """A prepared unit as a control sees it."""

    index: int
    module: str
    params: Params  # the slider values that ran (threshold_a, threshold_b)
    maps: list[np.ndarray]  # the fitted detected maps at the hint size, HxWxC uint8 (RGBA for inpaint)
    maps_hires: list[np.ndarray] | None = None  # the same at the hires-fix size
    weight: float = 1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    control_mode: ControlMode = ControlMode.BALANCED
    hr_option: HiResFixOption = HiResFixOption.BOTH
    seed: int = 0
    family: str | None = None  # the checkpoint's, when the host knows it
    inpaint_blur_sigma: int = 7  # the control_net_inpaint_blur_sigma setting
    embeddings: list[dict] = field(default_factory=list)  # what embedding preprocessors gave (CLIP vision)
    empty_prompts: bool = False  # prompt and negative prompt both empty


@dataclass
class Controls:
    effects: list[Effect] = field(default_factory=list)
    post: list[PixelPost] = field(default_factory=list)
    noise: list[NoiseModifier] = field(default_factory=list)


# control name -> "module:function" building Controls from a ControlRequest (imported on use)
REGISTRY: dict[str, str] = {
    "colorfix": "colorfix:build",
    "inpaint_only": "inpaint_only:build",
    "recolor": "recolor:build",
    "reference": "reference:build",
    "revision": "revision:build",
}


def build(name: str, request: ControlRequest) -> Controls:
    module, function = REGISTRY[name].split(":")
    factory = getattr(importlib.import_module(f"{__name__}.{module}"), function)
    return factory(request)


def names() -> Sequence[str]:
    return tuple(REGISTRY)
