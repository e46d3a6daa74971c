"""The inpaint modules' map: the image with the mask as its alpha channel (the hook turns it into a hint)."""

from __future__ import annotations

import numpy as np

from lib_controlnet.errors import InputError


def inpaint_map(rgba: np.ndarray) -> np.ndarray:
    """HxWx4 uint8, RGB = the image, alpha = the mask (255 = repaint). Needs the mask: a plain RGB image
    would inpaint nothing, which is never what the caller meant."""
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise InputError("the inpaint preprocessors need a mask (an image with the mask as alpha)", field="mask")
    return rgba


def inpaint_display(rgba: np.ndarray) -> np.ndarray:
    """What a user is shown: the masked area half transparent (alpha = 255 - mask / 2)."""
    shown = rgba.copy()
    shown[:, :, 3] = 255 - rgba[:, :, 3] // 2
    return shown
