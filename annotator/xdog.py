"""scribble_xdog: a difference of Gaussians turned into a binary scribble."""

from __future__ import annotations

import cv2
import numpy as np

from .util import apply_padded, channel_min, hwc3, mask_to_rgb, resize_short_side

FINE_SIGMA = 0.5
COARSE_SIGMA = 5.0


def _xdog(img: np.ndarray, threshold: float) -> np.ndarray:
    x = img.astype(np.float32)
    dog = cv2.GaussianBlur(x, (0, 0), COARSE_SIGMA) - cv2.GaussianBlur(x, (0, 0), FINE_SIGMA)
    # Darkest-channel response: positive where a pixel is darker than its surroundings (a line).
    # (255 - x truncated to uint8, subtracted back from 255: the reference's rounding, i.e. ceil.)
    strength = 255 - (255.0 - channel_min(dog)).clip(0, 255).astype(np.uint8).astype(np.int32)
    # The reference computes 2*strength in uint8 and so wraps around for strength >= 128, dropping some of
    # the strongest lines; we compute in int32 so that a stronger line is never lost.
    return mask_to_rgb(2 * strength > threshold)


def scribble_xdog(image: np.ndarray, resolution: float, threshold: float) -> np.ndarray:
    """Pixels whose darkest-channel DoG (sigma 5 minus sigma 0.5) times two exceeds `threshold` become white.
    A lower threshold keeps fainter lines (more white)."""
    img = resize_short_side(hwc3(image), resolution)
    return apply_padded(img, lambda x: _xdog(x, threshold))
