"""How closely an image's edges follow a control map's: the edge F1 score at a pixel tolerance.

Both edge maps are Canny's (the `canny` preprocessor's, default thresholds). An edge pixel of the image is a
hit when a control edge lies within `tolerance` pixels (Euclidean), and the other way round: precision is the
share of the image's edges near a control edge, recall the share of control edges near an image edge, F1
their harmonic mean. 1.0: every edge matches; 0.0: none does, or the image has no edges at all.
"""

from __future__ import annotations

import cv2
import numpy as np

from annotator.canny import canny

LOW, HIGH = 100, 200


def canny_edges(rgb: np.ndarray, low: int = LOW, high: int = HIGH) -> np.ndarray:
    """HxW bool: Canny edges of an HxWx3 uint8 image at its own size."""
    return canny(rgb, min(rgb.shape[:2]), low, high)[:, :, 0] > 127


def canny_map(rgb: np.ndarray) -> np.ndarray:
    """The control map a canny unit sends for this image at its own size: white edges on black, HxWx3."""
    return np.repeat((canny_edges(rgb) * 255).astype(np.uint8)[:, :, None], 3, axis=2)


def _distance_to(edges: np.ndarray) -> np.ndarray:
    """Per pixel, the distance to the nearest edge pixel (large where there is none)."""
    if not edges.any():
        return np.full(edges.shape, np.inf, dtype=np.float32)
    return cv2.distanceTransform((~edges).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def edge_f1(edges: np.ndarray, reference: np.ndarray, tolerance: float = 2.0) -> float:
    """F1 of the bool edge map `edges` against `reference` (same size), hits within `tolerance` pixels."""
    if edges.shape != reference.shape:
        raise ValueError(f"edge maps differ in size: {edges.shape} vs {reference.shape}")
    if not reference.any():
        return 1.0 if not edges.any() else 0.0
    if not edges.any():
        return 0.0
    precision = float((_distance_to(reference)[edges] <= tolerance).mean())
    recall = float((_distance_to(edges)[reference] <= tolerance).mean())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def image_edge_f1(image: np.ndarray, control_edges: np.ndarray, tolerance: float = 2.0) -> float:
    """F1 of an RGB image's Canny edges against a control edge map (bool HxW, or a white-on-black RGB map)."""
    if control_edges.ndim == 3:
        control_edges = control_edges[:, :, 0] > 127
    return edge_f1(canny_edges(image), control_edges, tolerance)
