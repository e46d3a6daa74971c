"""threshold: a binary map of the pixels whose every channel is brighter than a level."""

from __future__ import annotations

import numpy as np

from .util import channel_min, hwc3, mask_to_rgb, resize_short_side


def threshold(image: np.ndarray, resolution: float, level: float) -> np.ndarray:
    """255 where min(R, G, B) > `level`, else 0. Raising the level can only turn pixels black."""
    img = resize_short_side(hwc3(image), resolution)
    return mask_to_rgb(channel_min(img) > level)
