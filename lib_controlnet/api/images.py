"""Images in and out of the API as base64 text. Only base64 (a data-URI prefix is fine): never a file path,
never a URL, so a request can make the server neither read its own files nor fetch anything."""

from __future__ import annotations

import base64
import binascii
import io
import re

import numpy as np
from PIL import Image, UnidentifiedImageError

from annotator.util import hwc3
from lib_controlnet.errors import InputError

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")
MAX_PIXELS = 64 * 2**20  # about 8k x 8k; decoding happens only after the header's size is checked
_DATA_URI = re.compile(r"^data:[\w/+.-]*(;[\w=.-]+)*;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def _decode_bytes(text, field: str) -> bytes:
    if not isinstance(text, str) or not text.strip():
        raise InputError("Invalid encoded image: empty", field=field)
    text = text.strip()
    if re.match(r"^[a-z][a-z0-9+.-]*://", text, re.IGNORECASE):
        raise InputError("Invalid encoded image: URLs are not fetched; send the image itself as base64",
                         field=field)
    prefix = _DATA_URI.match(text)
    if prefix:
        text = text[prefix.end():]
    elif text.startswith("data:"):
        raise InputError("Invalid encoded image: only base64 data URIs are accepted", field=field)
    try:
        return base64.b64decode(_WHITESPACE.sub("", text), validate=True)
    except (binascii.Error, ValueError):
        raise InputError("Invalid encoded image: not valid base64", field=field) from None


def open_image(text, field: str) -> Image.Image:
    """A decoded, fully loaded PIL image from base64 text, or InputError naming `field`."""
    data = _decode_bytes(text, field)
    try:
        image = Image.open(io.BytesIO(data))
        if image.format not in ALLOWED_FORMATS:
            raise InputError(f"Invalid encoded image: format {image.format} is not one of "
                             f"{', '.join(ALLOWED_FORMATS)}", field=field)
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise InputError(f"image of {width}x{height} is larger than {MAX_PIXELS} pixels", field=field)
        image.load()
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
        raise InputError(f"Invalid encoded image: {exc}", field=field) from None
    return image


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
