"""t2ia_color_grid (module `color`): a coarse mosaic of the image's colours for the T2I colour adapter."""

from __future__ import annotations

import cv2
import numpy as np

from .util import hwc3, short_side_size

# One mosaic cell is about this many pixels wide at the processing resolution.
CELL = 64


def color_grid(image: np.ndarray, resolution: float) -> np.ndarray:
    """Short side scaled to `resolution` (area interpolation, as the reference does even when enlarging),
    shrunk by 64 with cubic interpolation and blown back up with nearest neighbour."""
    img = hwc3(image)
    height, width = short_side_size(*img.shape[:2], resolution)
    img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
    grid = cv2.resize(img, (max(1, width // CELL), max(1, height // CELL)), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_NEAREST)
