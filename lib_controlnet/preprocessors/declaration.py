"""What a preprocessor declares about itself: names, sliders, what it needs and what it returns.

One `Preprocessor` per module. The UI, `/controlnet/module_list`, `/controlnet/detect` and the hook read
these fields; the `run` function does the work. Slider labels, ranges and defaults are the reference
extension's, because API clients and saved infotexts send values on those scales.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Slider:
    """One numeric parameter as the UI shows it. `visible=False` means the module has no such parameter;
    `affects_output=False` marks a slider shown only because the reference shows it (see RESOLUTION_UNUSED)."""

    label: str
    value: float
    minimum: float
    maximum: float
    step: float = 0.01  # the reference's default step when a table gives none
    visible: bool = True
    affects_output: bool = True

    def __post_init__(self):
        if not (self.minimum <= self.value <= self.maximum):
            raise ValueError(f"slider {self.label!r}: default {self.value} outside [{self.minimum}, {self.maximum}]")

    def contains(self, value: float) -> bool:
        return math.isfinite(value) and self.minimum <= value <= self.maximum

    def api_json(self) -> dict:
        """The entry `/controlnet/module_list` lists under `module_detail[...]["sliders"]`."""
        return {"name": self.label, "value": self.value, "min": self.minimum, "max": self.maximum,
                "step": self.step}


# The reference's placeholder for an absent parameter (serialised as 0.5 in infotexts).
HIDDEN = Slider("EMPTY_LABEL", 0.5, 0.0, 1.0, visible=False, affects_output=False)
RESOLUTION = Slider("Resolution", 512, 64, 2048, step=8)
# The reference shows the Resolution slider for every legacy module, including those that ignore it
# (tile_resample, tile_colorfix*, recolor_*); we keep listing it so clients that read sliders by position
# still find threshold A second, but no value of it is refused or used.
RESOLUTION_UNUSED = Slider("Resolution", 512, 64, 2048, step=8, affects_output=False)
# Modules that ignore the resolution (invert, inpaint): hidden, and 512 rather than 0.5 for whoever asks.
NO_RESOLUTION = Slider("Resolution", 512, 64, 2048, step=8, visible=False, affects_output=False)


@dataclass(frozen=True)
class Params:
    """Resolved slider values for one call (see params.resolve_params)."""

    resolution: int = 512
    slider_1: float = 0.5
    slider_2: float = 0.5
    # NumPy seed for random preprocessors (shuffle); None means a fresh random draw (and no caching).
    seed: int | None = None


@dataclass
class Detection:
    """A preprocessor's result: the map the ControlNet reads, what a user is shown, and pose data if any."""

    map: np.ndarray
    display: np.ndarray
    pose: dict | None = None


Runner = Callable[[np.ndarray, Params], "np.ndarray | Detection"]


@dataclass(frozen=True)
class Preprocessor:
    name: str
    run: Runner
    label: str = ""  # display name; defaults to `name`
    aliases: tuple[str, ...] = ()  # older names still accepted (infotexts, API payloads)
    tags: tuple[str, ...] = ()  # control types it serves ("Canny", "OpenPose", ...)
    priority: int = 0  # higher sorts first in module lists
    resolution: Slider = RESOLUTION
    slider_1: Slider = HIDDEN  # threshold_a
    slider_2: Slider = HIDDEN  # threshold_b
    weight_file: str | None = None  # preprocessor weights it needs; None for the weight-free ones
    model_free: bool = False  # True when no ControlNet model is used with it (the reference's model_free)
    accepts_mask: bool = False  # gets HxWx4 (alpha = mask) when a mask is given
    requires_mask: bool = False
    returns_image: bool = True  # False: returns data (e.g. an embedding) instead of a map
    returns_pose: bool = False  # also returns OpenPose JSON
    uses_seed: bool = False  # output depends on Params.seed
    show_control_mode: bool = True
    soft_injection_in_hires: bool = False  # the hook uses soft injection in the hires pass (canny, mlsd)
    control: str | None = None  # a hook-side control it needs (`lib_controlnet.controls`: "colorfix", ...)
    outpaint_first: bool = False  # "Resize and Fill": pad the input to the target first, padding marked as mask
    description: str = field(default="", compare=False)

    def __post_init__(self):
        if not self.label:
            object.__setattr__(self, "label", self.name)
        if self.requires_mask and not self.accepts_mask:
            raise ValueError(f"{self.name}: requires_mask without accepts_mask")

    @property
    def needs_weights(self) -> bool:
        return self.weight_file is not None

    @property
    def visible_sliders(self) -> list[Slider]:
        return [s for s in (self.resolution, self.slider_1, self.slider_2) if s.visible]


def neural(module: str, function: str, *sliders: str, **options) -> Callable[[np.ndarray, Params], Any]:
    """`run` for a neural annotator: `annotator.neural.<module>.<function>(image, resolution, *sliders,
    **options)`, imported on first call so that torch-heavy modules load only when one of them is used.
    `sliders` names the Params fields passed after the resolution ("slider_1", "slider_2")."""

    def run(image: np.ndarray, params: Params):
        fn = getattr(importlib.import_module(f"annotator.neural.{module}"), function)
        return fn(image, params.resolution, *(getattr(params, s) for s in sliders), **options)

    run.__qualname__ = f"neural({module}.{function})"
    return run
