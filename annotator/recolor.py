"""recolor_luminance / recolor_intensity: the photo's lightness as grey, gamma-adjusted, for recolor models."""

from __future__ import annotations

import cv2
import numpy as np

from .util import channel_max, gray_to_rgb, hwc3


def _gamma_grey(channel: np.ndarray, gamma: float) -> np.ndarray:
    # (v / 255) ** gamma * 255 for the 256 possible values, applied as a lookup table: the same numbers
    # as computing it per pixel, without a float image.
    levels = (np.arange(256, dtype=np.float32) / 255.0) ** np.float32(gamma)
    table = (levels * 255.0).clip(0, 255).astype(np.uint8)
    return gray_to_rgb(cv2.LUT(np.ascontiguousarray(channel), table))


def recolor_luminance(image: np.ndarray, gamma: float) -> np.ndarray:
    """CIE L* (OpenCV's 8-bit LAB L, 0..255) raised to `gamma`: gamma > 1 darkens the mid-tones.

    The reference converts with COLOR_BGR2LAB on an RGB image, which swaps the red and blue weights of the
    luminance; we convert from RGB so that L* is the real perceived lightness.
    """
    lightness = cv2.cvtColor(hwc3(image), cv2.COLOR_RGB2LAB)[:, :, 0]
    return _gamma_grey(lightness, gamma)


def recolor_intensity(image: np.ndarray, gamma: float) -> np.ndarray:
    """HSV value, max(R, G, B), raised to `gamma`: gamma > 1 darkens the mid-tones."""
    value = channel_max(hwc3(image))
    return _gamma_grey(value, gamma)
