"""shuffle: the image's content moved around by a smooth random flow field (for the shuffle ControlNet)."""

from __future__ import annotations

import cv2
import numpy as np

from .util import hwc3, resize_short_side

# Size in pixels of one cell of the random flow field: larger cells give larger coherent patches.
FLOW_CELL = 256


def smooth_noise(height: int, width: int, cell: int, rng: np.random.RandomState) -> np.ndarray:
    """HxW float noise in [0, 1]: uniform noise on a coarse grid (one value per `cell` pixels, plus a margin),
    cubic-upscaled and cropped so the field is smooth inside the image."""
    coarse = rng.uniform(low=0.0, high=1.0, size=(height // cell + 2, width // cell + 2, 1))
    field = cv2.resize(coarse, (width + 2 * cell, height + 2 * cell), interpolation=cv2.INTER_CUBIC)
    field = field[cell:cell + height, cell:cell + width]
    field = field - field.min()
    peak = field.max()
    return field / peak if peak > 0 else field


def shuffle(image: np.ndarray, resolution: float, seed: int | None) -> np.ndarray:
    """Every output pixel samples the input at a random but smoothly varying position.

    With a seed the draws are those of `np.random.seed(seed)` followed by `np.random.uniform` (x field first,
    then y), which is what the reference produces after seeding NumPy from the generation seed; without one
    the map is different on every call.
    """
    img = resize_short_side(hwc3(image), resolution)
    height, width = img.shape[:2]
    rng = np.random.RandomState(seed) if seed is not None else np.random.RandomState()
    map_x = smooth_noise(height, width, FLOW_CELL, rng) * float(width - 1)
    map_y = smooth_noise(height, width, FLOW_CELL, rng) * float(height - 1)
    return cv2.remap(img, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_LINEAR)


def generation_seed(seed: int, subseed: int, first_seed: int) -> int:
    """The NumPy seed the reference derives from an A1111 generation: (seed + subseed) mod 2**32, where -1
    (random) stands for the first of the generation's actual seeds and other negatives count as 0."""
    base = first_seed if seed == -1 else max(int(seed), 0)
    sub = first_seed if subseed == -1 else max(int(subseed), 0)
    return (int(base) + int(sub)) & 0xFFFFFFFF
