"""Shape and size helpers shared by the annotators."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from lib_controlnet.errors import InputError

# Annotators that use neighbourhoods run on an image padded to this multiple and crop the result back,
# as the reference does; the edge-replicated padding decides what the filters see past the border.
PAD_MULTIPLE = 64


def hwc3(image: np.ndarray) -> np.ndarray:
    """Any uint8 image as HxWx3: grey is replicated, RGBA is composited over white (alpha = coverage)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise InputError(f"expected a uint8 image array, got {getattr(image, 'dtype', type(image).__name__)}",
                         field="image")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {image.shape}", field="image")
    channels = image.shape[2]
    if channels == 3:
        return image
    if channels == 1:
        return np.repeat(image, 3, axis=2)
    alpha = image[:, :, 3:4].astype(np.float32) / 255.0
    over_white = image[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return over_white.clip(0, 255).astype(np.uint8)


def short_side_size(height: int, width: int, resolution: float) -> tuple[int, int]:
    """(height, width) scaled so that the short side is `resolution`, rounded as the reference rounds."""
    k = float(resolution) / float(min(height, width))
    return int(np.round(height * k)), int(np.round(width * k))


def resize_short_side(image: np.ndarray, resolution: float) -> np.ndarray:
    """Scale so the short side equals `resolution`: cubic when enlarging, area when shrinking."""
    height, width = image.shape[:2]
    new_h, new_w = short_side_size(height, width, resolution)
    if (new_h, new_w) == (height, width):
        return image
    enlarging = resolution > min(height, width)
    interpolation = cv2.INTER_CUBIC if enlarging else cv2.INTER_AREA
    return cv2.resize(image, (new_w, new_h), interpolation=interpolation)


def apply_padded(image: np.ndarray, fn: Callable[[np.ndarray], np.ndarray],
                 multiple: int = PAD_MULTIPLE) -> np.ndarray:
    """Run `fn` on `image` edge-padded at the bottom/right to a multiple of `multiple`, then crop back."""
    height, width = image.shape[:2]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h == 0 and pad_w == 0:
        return fn(image)
    widths = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (image.ndim - 2)
    result = fn(np.pad(image, widths, mode="edge"))
    return np.ascontiguousarray(result[:height, :width])


def channel_min(x: np.ndarray) -> np.ndarray:
    """Per-pixel minimum over the 3 channels; the same as np.min(x, axis=2), several times faster."""
    return np.minimum(np.minimum(x[:, :, 0], x[:, :, 1]), x[:, :, 2])


def channel_max(x: np.ndarray) -> np.ndarray:
    """Per-pixel maximum over the 3 channels; the same as np.max(x, axis=2), several times faster."""
    return np.maximum(np.maximum(x[:, :, 0], x[:, :, 1]), x[:, :, 2])


def mask_to_rgb(mask: np.ndarray) -> np.ndarray:
    """A boolean HxW mask as a white-on-black HxWx3 uint8 map."""
    return gray_to_rgb(mask.view(np.uint8) * np.uint8(255))


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """HxW uint8 as HxWx3 (the channel layout every ControlNet hint has)."""
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
