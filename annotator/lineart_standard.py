"""lineart_standard: dark lines (a pixel darker than its blurred surroundings) as white on black."""

from __future__ import annotations

import cv2
import numpy as np

from .util import apply_padded, channel_min, gray_to_rgb, hwc3, resize_short_side

BLUR_SIGMA = 6.0
# The line strength is divided by the median strength of the pixels that are clearly lines (> 8), but never
# by less than 16, so a flat image stays black instead of amplifying noise.
LINE_FLOOR = 8.0
MIN_NORMALISER = 16.0
MID_GREY = 127.0


def line_strength(img: np.ndarray) -> np.ndarray:
    """HxW uint8: how much darker each pixel is than its blurred surroundings, scaled so typical lines are
    mid-grey (softedge_anyline builds on it too)."""
    x = img.astype(np.float32)
    darkness = channel_min(cv2.GaussianBlur(x, (0, 0), BLUR_SIGMA) - x).clip(0, 255)
    lines = darkness[darkness > LINE_FLOOR]
    normaliser = max(MIN_NORMALISER, float(np.median(lines))) if lines.size else MIN_NORMALISER
    return (darkness / normaliser * MID_GREY).clip(0, 255).astype(np.uint8)


def lineart_standard(image: np.ndarray, resolution: float) -> np.ndarray:
    img = resize_short_side(hwc3(image), resolution)
    return gray_to_rgb(apply_padded(img, line_strength))
