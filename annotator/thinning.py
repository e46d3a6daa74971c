"""Morphological line tools for binary edge maps: thinning to one pixel, spur pruning, directional maxima.

Used when an edge map is resized: a scaled one-pixel line becomes a blurred band, and these bring it back
to one pixel so that thin-line ControlNets (canny, lineart, scribble) see the kind of map they were trained on.
"""

from __future__ import annotations

import cv2
import numpy as np

# Hit-or-miss elements (1 = line pixel, -1 = background, 0 = either) that find a removable boundary pixel:
# one on a straight side, one on a corner; the four rotations of each cover every direction. Removing
# their matches repeatedly erodes a band to its one-pixel skeleton without breaking it.
_SIDE = np.array([[-1, -1, -1], [0, 1, 0], [1, 1, 1]], dtype=np.int32)
_CORNER = np.array([[0, -1, -1], [1, 1, -1], [0, 1, 0]], dtype=np.int32)
THINNING_ELEMENTS = [np.rot90(e, k) for k in range(4) for e in (_SIDE, _CORNER)]

# The thinning passes needed are at most about half the thickest band; 32 covers a 64-pixel band.
MAX_THINNING_PASSES = 32

_RING = [(-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1)]  # clockwise neighbours


def _remove_matches(binary: np.ndarray, element: np.ndarray) -> bool:
    hits = cv2.morphologyEx(binary, cv2.MORPH_HITMISS, element)
    found = hits > 127
    binary[found] = 0
    return bool(found.any())


def thin(binary: np.ndarray, prune: bool = True) -> np.ndarray:
    """One-pixel skeleton of a 0/255 uint8 map (a copy). With `prune`, end pixels of spurs and isolated
    pixels are then removed once, which cleans the whiskers that upscaling leaves."""
    out = binary.copy()
    for _ in range(MAX_THINNING_PASSES):
        changed = False
        for element in THINNING_ELEMENTS:
            changed |= _remove_matches(out, element)
        if not changed:
            break
    return prune_ends(out) if prune else out


def prune_ends(binary: np.ndarray) -> np.ndarray:
    """Remove, once, every line pixel that ends a line: its neighbours (at most two, touching each other)
    form a single run around it. Isolated pixels go too."""
    fg = np.pad(binary > 127, 1)
    height, width = binary.shape
    ring = [fg[1 + dy:1 + dy + height, 1 + dx:1 + dx + width] for dy, dx in _RING]
    neighbours = np.zeros(binary.shape, dtype=np.uint8)
    steps = np.zeros(binary.shape, dtype=np.uint8)
    for i in range(8):
        neighbours += ring[i]
        # Background-to-line steps going once around the ring: 1 for a line end, >= 2 mid-line.
        steps += ~ring[i] & ring[(i + 1) % 8]
    ends = fg[1:-1, 1:-1] & (neighbours <= 2) & (steps <= 1)
    out = binary.copy()
    out[ends] = 0
    return out


def directional_maxima(gray: np.ndarray) -> np.ndarray:
    """Keep a pixel's value where it is the maximum of its 3-pixel line in at least one of four directions
    (horizontal, vertical, both diagonals); zero elsewhere. A cheap non-maximum suppression for blurred lines."""
    lines = [
        np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]], dtype=np.uint8),
        np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0]], dtype=np.uint8),
        np.eye(3, dtype=np.uint8),
        np.fliplr(np.eye(3, dtype=np.uint8)).copy(),
    ]
    keep = np.zeros(gray.shape, dtype=bool)
    for kernel in lines:
        keep |= cv2.dilate(gray, kernel) == gray
    return np.where(keep, gray, 0).astype(gray.dtype)
