"""Scribbles drawn by a user: strokes on a canvas, turned into the white-on-black map scribble models expect."""

from __future__ import annotations

import cv2
import numpy as np

from .util import hwc3, mask_to_rgb, resize_short_side

# The reference's "canvas scribble mode": an alpha channel that is neither (almost) all transparent nor
# (almost) all opaque holds strokes, and those strokes are the input rather than the RGB underneath.
ALPHA_EMPTY_MAX = 5
ALPHA_FULL_MIN = 250


def has_canvas_strokes(rgba: np.ndarray) -> bool:
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        return False
    alpha = rgba[:, :, 3]
    return not (bool((alpha <= ALPHA_EMPTY_MAX).all()) or bool((alpha >= ALPHA_FULL_MIN).all()))


def canvas_input(rgba: np.ndarray, ignore_mask: bool = False) -> np.ndarray:
    """The image a non-inpaint preprocessor should see, by the reference's rule: the alpha strokes as grey
    (white strokes on black) when the alpha holds strokes and `ignore_mask` (the setting
    "Ignore mask on ControlNet input image if control type is not inpaint") is off; otherwise the RGB."""
    if rgba.ndim == 3 and rgba.shape[2] == 4:
        if not ignore_mask and has_canvas_strokes(rgba):
            return hwc3(np.ascontiguousarray(rgba[:, :, 3]))
        return np.ascontiguousarray(rgba[:, :, :3])
    return hwc3(rgba)


def _stroke_strength(img: np.ndarray) -> np.ndarray:
    """How far each pixel is from the paper colour, 0..255, whichever way round the drawing is."""
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.int16)
    border = np.concatenate([grey[0, :], grey[-1, :], grey[:, 0], grey[:, -1]])
    paper = int(np.median(border))
    return np.abs(grey - paper).astype(np.uint8)


def scribble_sketch(image: np.ndarray, resolution: float, stroke_threshold: float) -> np.ndarray:
    """White strokes on black from a user drawing: canvas strokes in the alpha channel if there are any,
    else the pixels that differ from the paper colour (the median of the border) by more than
    `stroke_threshold` — dark pen on white paper and white chalk on black both work. A higher threshold keeps
    only the bolder strokes."""
    source = canvas_input(image)
    strength = _stroke_strength(resize_short_side(source, resolution))
    return mask_to_rgb(strength > stroke_threshold)
