"""invert: for line drawings made black on white, which line ControlNets expect white on black."""

from __future__ import annotations

import numpy as np

from .util import hwc3


def invert(image: np.ndarray) -> np.ndarray:
    return 255 - hwc3(image)
