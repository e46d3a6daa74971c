"""blur_gaussian: the photo blurred, for tile/blur ControlNets."""

from __future__ import annotations

import cv2
import numpy as np

from .util import hwc3, resize_short_side


def blur_gaussian(image: np.ndarray, resolution: float, sigma: float) -> np.ndarray:
    """Scaled to `resolution` (short side), then Gaussian-blurred with `sigma` pixels (larger = softer)."""
    img = resize_short_side(hwc3(image), resolution)
    return cv2.GaussianBlur(img, (0, 0), float(sigma))
