"""Images in and out of the API as base64 text. Only base64 (a data-URI prefix is fine): never a file path,
never a URL, so a request can make the server neither read its own files nor fetch anything."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

__all__ = ["MAX_PIXELS", "decode_image", "decode_mask", "encode_png", "open_image"]

from annotator.util import hwc3
from lib_controlnet.errors import InputError
from lib_controlnet.units.image_input import MAX_PIXELS, decode_base64_image


def open_image(text, field: str) -> Image.Image:
    """A decoded, fully loaded PIL image from base64 text, or InputError naming `field`."""
    if not isinstance(text, str):
        raise InputError("Invalid encoded image: expected base64 text", field=field)
    try:
        return decode_base64_image(text)
    except InputError as exc:
        raise exc.at(field=field) from None


def decode_image(text, field: str) -> np.ndarray:
    """HxWx3 uint8 RGB; transparency is composited over white (the reference's rule for input images)."""
    image = open_image(text, field)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    return hwc3(np.asarray(image.convert("RGBA" if has_alpha else "RGB")))


def decode_mask(text, field: str) -> np.ndarray:
    """HxW uint8 mask: grey images as they are, colour ones by their first (red) channel like the reference."""
    image = open_image(text, field)
    if image.mode in ("1", "L", "LA", "I", "I;16", "F"):
        return np.asarray(image.convert("L"))
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, 0])


def encode_png(image: np.ndarray) -> str:
    """Base64 PNG without a data-URI prefix (what A1111's encoder returns by default)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
