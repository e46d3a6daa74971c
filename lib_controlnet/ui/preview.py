"""The run-preprocessor button: the detected map of the unit's image, made the way generation makes it.

Same steps as `generation.prepare_units` up to the map: decode the image and its mask, pick the input
(RGBA for mask/CLIP preprocessors, a drawn scribble, or RGB), pixel-perfect resolution from the target size,
slider values checked against the preprocessor's declaration, the shared result cache. Failures come back
as a message for the unit's status element, never only as a console traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lib_controlnet.errors import ControlNetError
from lib_controlnet.preprocessors import Registry, resolve_params, run_preprocessor
from lib_controlnet.units.hint_size import hint_size, pixel_perfect_resolution
from lib_controlnet.units.image_input import combine, control_input
from lib_controlnet.units.unit import Unit

from .compat import image_and_mask
from .unit_checks import ERROR

logger = logging.getLogger("controlnet")
Report = Callable[[float, str], None]


@dataclass
class PreviewResult:
    display: np.ndarray | None
    message: str

    @property
    def ok(self) -> bool:
        return self.display is not None


def run_preview(image_value: Any, module: str, processor_res: float, threshold_a: float, threshold_b: float, *,
                preprocessors: Registry, pixel_perfect: bool = False, resize_mode: str = "Crop and Resize",
                target_size: tuple[int, int] | None = None, ignore_noninpaint_mask: bool = False,
                report: Report | None = None) -> PreviewResult:
    """The map for the panel's values; `target_size` is the generation's (width, height) for Pixel Perfect."""
    report = report or (lambda fraction, text: None)
    report(0.0, "Reading the control image")
    rgb, mask = image_and_mask(image_value)
    if rgb is None:
        return PreviewResult(None, f"{ERROR} upload a control image first")
    preprocessor = preprocessors.get(module)
    if preprocessor is None:
        return PreviewResult(None, f"{ERROR} preprocessor {module!r} is not known")
    if not preprocessor.returns_image:
        return PreviewResult(None, f"{ERROR} {preprocessor.label} produces data, not an image to preview")
    try:
        rgba = combine(rgb, mask)
        resolution = processor_res
        if pixel_perfect:
            width, height = target_size if target_size else (rgb.shape[1], rgb.shape[0])
            h, w = hint_size(width, height)
            resolution = pixel_perfect_resolution(rgba, h, w, resize_mode)
        params = resolve_params(preprocessor, resolution, threshold_a, threshold_b)
        keep_rgba = preprocessor.accepts_mask or Unit(module=preprocessor.name).uses_clip
        source = control_input(rgba, keep_rgba=keep_rgba, ignore_mask=ignore_noninpaint_mask)
        report(0.2, f"Running {preprocessor.label}")
        started = time.perf_counter()
        detection = run_preprocessor(preprocessor, source, params)
        seconds = time.perf_counter() - started
    except ControlNetError as exc:
        return PreviewResult(None, f"{ERROR} {exc.message}")
    except Exception as exc:  # a preprocessor's own failure (missing weights, a library error): say it here
        logger.exception("ControlNet preprocessor %s failed", preprocessor.name)
        return PreviewResult(None, f"{ERROR} preprocessor {preprocessor.label} failed: {type(exc).__name__}: {exc}")
    report(1.0, "Done")
    shown = detection.display
    used = f" at resolution {params.resolution}" if preprocessor.resolution.visible else ""
    return PreviewResult(
        shown,
        f"**Preview:** {preprocessor.label}, {shown.shape[1]}×{shown.shape[0]} map{used}, {seconds:.2f} s",
    )
