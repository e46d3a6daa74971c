"""tile_resample: the photo shrunk by a rate, so that the tile ControlNet adds the detail back."""

from __future__ import annotations

import cv2
import numpy as np

from .util import hwc3

# Below this rate the reference leaves the image alone (a 1.05x shrink is not worth the blur).
IDENTITY_BELOW = 1.1


def tile_resample(image: np.ndarray, down_sampling_rate: float) -> np.ndarray:
    """Area-downscaled to int(H / rate) x int(W / rate); a higher rate gives a smaller, blurrier hint."""
    img = hwc3(image)
    if down_sampling_rate < IDENTITY_BELOW:
        return img
    height, width = img.shape[:2]
    new_h = max(1, int(height / float(down_sampling_rate)))
    new_w = max(1, int(width / float(down_sampling_rate)))
    return cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_AREA)
