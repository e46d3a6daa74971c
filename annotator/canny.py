"""Canny edges (the reference's `canny`): white one-pixel edges on black."""

from __future__ import annotations

import cv2
import numpy as np

from .util import apply_padded, gray_to_rgb, hwc3, resize_short_side


def canny(image: np.ndarray, resolution: float, low_threshold: float, high_threshold: float) -> np.ndarray:
    """cv2.Canny on the image scaled to `resolution` (short side); thresholds are truncated to int like the
    reference's sliders. Raising either threshold removes edges, never adds them."""
    img = resize_short_side(hwc3(image), resolution)
    low, high = int(low_threshold), int(high_threshold)
    return gray_to_rgb(apply_padded(img, lambda x: cv2.Canny(x, low, high)))
