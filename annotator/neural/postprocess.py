"""Map post-processing shared by the neural annotators, as the reference extension does it."""

from __future__ import annotations

import cv2
import numpy as np

# The four line directions a pixel must be a maximum along (at least one of them) to survive NMS.
_DIRECTIONS = (
    np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]], dtype=np.uint8),
    np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0]], dtype=np.uint8),
    np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.uint8),
    np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=np.uint8),
)
SCRIBBLE_NMS_THRESHOLD = 127
SCRIBBLE_SIGMA = 3.0
SCRIBBLE_KEEP_ABOVE = 4


def edge_nms(edge: np.ndarray, threshold: float, sigma: float) -> np.ndarray:
    """Thin soft edges: blur, keep pixels that are a maximum along some direction (horizontal, vertical or
    a diagonal) and above `threshold`; 0/255 uint8."""
    blurred = cv2.GaussianBlur(edge.astype(np.float32), (0, 0), sigma)
    kept = np.zeros_like(blurred)
    for kernel in _DIRECTIONS:
        np.putmask(kept, cv2.dilate(blurred, kernel=kernel) == blurred, blurred)
    return np.where(kept > threshold, 255, 0).astype(np.uint8)


def scribble_from_soft_edges(edge: np.ndarray) -> np.ndarray:
    """The reference's scribble_hed / scribble_pidinet: NMS at 127, then a sigma-3 blur widened to lines by
    keeping everything above 4."""
    lines = cv2.GaussianBlur(edge_nms(edge, SCRIBBLE_NMS_THRESHOLD, SCRIBBLE_SIGMA), (0, 0), SCRIBBLE_SIGMA)
    return np.where(lines > SCRIBBLE_KEEP_ABOVE, 255, 0).astype(np.uint8)


def safe_step(x: np.ndarray, steps: int = 2) -> np.ndarray:
    """The "safe" quantisation of a [0, 1] edge map: floor(x * (steps + 1)) / steps, so at steps=2 the map
    takes the values 0, 0.5, 1 and 1.5 (clipped to 1 when turned to uint8) and fine texture disappears."""
    return np.floor(x.astype(np.float32) * float(steps + 1)) / float(steps)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] float map to uint8 the way the reference does it (scale, clip, truncate)."""
    return (x * 255.0).clip(0, 255).astype(np.uint8)


def normalise_min_max(x: np.ndarray) -> np.ndarray:
    """x scaled to [0, 1] by its own minimum and maximum (a constant map becomes 0)."""
    x = x.astype(np.float32)
    low, high = float(x.min()), float(x.max())
    return (x - low) / (high - low) if high > low else np.zeros_like(x)
