"""Blank canvases to draw a scribble on, and the control image's size for "send dimensions"."""

from __future__ import annotations

from typing import Any

import numpy as np

from .compat import image_and_mask

# The reference's canvas sliders.
CANVAS_MIN, CANVAS_MAX, CANVAS_STEP, CANVAS_DEFAULT = 256, 1024, 64, 512


def blank_canvas(width: float, height: float) -> np.ndarray:
    """A white HxWx3 image; strokes drawn on it become the mask, which non-inpaint preprocessors read as
    the scribble (image_input.control_input's canvas rule)."""
    w, h = int(width), int(height)
    if w <= 0 or h <= 0:
        raise ValueError(f"a canvas needs a positive size, got {w}x{h}")
    return np.full((h, w, 3), 255, dtype=np.uint8)


def image_size(image_value: Any) -> tuple[int, int] | None:
    """(width, height) of the image widget's value, None when it is empty."""
    rgb, _ = image_and_mask(image_value)
    if rgb is None:
        return None
    return int(rgb.shape[1]), int(rgb.shape[0])
