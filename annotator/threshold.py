"""threshold: a binary map of the pixels whose every channel is brighter than a level."""

from __future__ import annotations

import numpy as np

from .util import hwc3, resize_short_side


def threshold(image: np.ndarray, resolution: float, level: float) -> np.ndarray:
    """255 where min(R, G, B) > `level`, else 0. Raising the level can only turn pixels black."""
    img = resize_short_side(hwc3(image), resolution)
    out = np.zeros(img.shape, dtype=np.uint8)
    out[np.min(img, axis=2) > level] = 255
    return out
