"""Decoding a unit's `image` / `mask` in every shape the reference accepts into HxWx4 RGBA uint8 arrays.

Accepted (reference §1.3): base64 text (a `data:...;base64,` prefix is fine), numpy arrays HxW / HxWx1 /
HxWx3 / HxWx4 (uint8), PIL images, `{"image": x, "mask": y}`, `[image, mask]` / `(image, mask)`, and a list
of such dicts (multi-input). The colour part follows the reference: grey is replicated and RGBA is
composited over white. The mask becomes the alpha channel (zeros when there is none).

A string is base64 or an error: API input never names a file on the server, and a URL is never fetched.
`allow_paths=True` exists for trusted callers only (a batch directory the user typed into the UI).
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from annotator.util import hwc3

from ..errors import ControlNetError, InputError

# Larger images are refused before their pixels are decoded (a small PNG can expand to gigabytes).
MAX_PIXELS = 64 * 2**20
# Raster formats only: Pillow's EPS/PDF-like plugins would run external programs.
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")  # JPEG covers multi-picture (MPO) files

_DATA_URI = re.compile(r"^data:[\w/+.-]*(?:;[\w=.+-]+)*;base64,", re.IGNORECASE)
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


# --- whole units ----------------------------------------------------------------------------------------
def decode_unit_images(unit, *, index: int | None = None, allow_paths: bool = False) -> list[np.ndarray] | None:
    """The unit's input images as HxWx4 RGBA arrays (one per input), or None when it has no image."""
    return decode_images(unit.image, unit.mask, unit=index, allow_paths=allow_paths)


def decode_images(image, mask=None, *, unit: int | None = None, allow_paths: bool = False) -> list[np.ndarray] | None:
    """`image` (and an optional separate `mask`) in any accepted shape -> list of HxWx4 RGBA uint8."""
    pairs = _image_mask_pairs(image, mask, unit)
    if pairs is None:
        return None
    return [
        combine(
            read_rgb(img, field=img_field, unit=unit, allow_paths=allow_paths),
            None if msk is None else read_mask(msk, field=msk_field, unit=unit, allow_paths=allow_paths),
            unit=unit,
            field=msk_field,
        )
        for img, msk, img_field, msk_field in pairs
    ]


def _image_mask_pairs(image, mask, unit):
    """[(image, mask, image_field, mask_field), ...] from the accepted container shapes."""
    if image is None:
        if mask is not None:
            raise InputError("a mask is given but no image", unit=unit, field="mask")
        return None
    if isinstance(image, dict):
        inner_mask = _dict_image_mask(image, unit, "image")
        if inner_mask[1] is not None and mask is not None:
            raise InputError("the mask is given twice: inside 'image' and as 'mask'", unit=unit, field="mask")
        return [(inner_mask[0], inner_mask[1] if inner_mask[1] is not None else mask, "image",
                 "image.mask" if inner_mask[1] is not None else "mask")]
    if isinstance(image, (list, tuple)):
        if not image:
            raise InputError("an empty list is not an image", unit=unit, field="image")
        if isinstance(image[0], dict):  # multi-input: [{"image": ..., "mask": ...}, ...]
            if mask is not None:
                raise InputError("with several input images each carries its own mask", unit=unit, field="mask")
            pairs = []
            for i, item in enumerate(image):
                if not isinstance(item, dict):
                    raise InputError(f"item {i} must be a dict like the first one", unit=unit, field=f"image[{i}]")
                img, msk = _dict_image_mask(item, unit, f"image[{i}]")
                pairs.append((img, msk, f"image[{i}]", f"image[{i}].mask"))
            return pairs
        if len(image) != 2:
            raise InputError(
                f"a list image must be [image, mask] or a list of {{'image', 'mask'}} dicts, got {len(image)} items",
                unit=unit,
                field="image",
            )
        if mask is not None:
            raise InputError("the mask is given twice: in 'image' and as 'mask'", unit=unit, field="mask")
        if image[0] is None:
            raise InputError("[image, mask] has no image", unit=unit, field="image[0]")
        return [(image[0], image[1], "image[0]", "image[1]")]
    return [(image, mask, "image", "mask")]


def _dict_image_mask(item: dict, unit, field: str):
    unknown = sorted(str(k) for k in item if k not in ("image", "mask"))
    if unknown:
        raise InputError(f"unexpected keys {unknown}; expected 'image' and 'mask'", unit=unit, field=field)
    if item.get("image") is None:
        raise InputError("a dict image needs an 'image' entry", unit=unit, field=field)
    return item["image"], item.get("mask")


def combine(rgb: np.ndarray, mask: np.ndarray | None, *, unit: int | None = None, field: str = "mask") -> np.ndarray:
    """RGB plus mask (alpha) -> HxWx4; no mask gives alpha 0 (nothing masked)."""
    if mask is None:
        mask = np.zeros(rgb.shape[:2], dtype=np.uint8)
    if mask.shape[:2] != rgb.shape[:2]:
        raise InputError(
            f"image shape {tuple(rgb.shape[:2])} not aligned with mask shape {tuple(mask.shape[:2])}",
            unit=unit,
            field=field,
        )
    return np.concatenate([rgb, mask[:, :, None]], axis=2)


# --- single images --------------------------------------------------------------------------------------
def read_rgb(value, *, field: str = "image", unit: int | None = None, allow_paths: bool = False) -> np.ndarray:
    """HxWx3 uint8: grey replicated, RGBA composited over white (the reference's rule for input images)."""
    return hwc3(read_array(value, field=field, unit=unit, allow_paths=allow_paths))


def read_mask(value, *, field: str = "mask", unit: int | None = None, allow_paths: bool = False) -> np.ndarray:
    """HxW uint8 mask (255 = masked)."""
    return mask_channel(read_array(value, field=field, unit=unit, allow_paths=allow_paths))


def mask_channel(array: np.ndarray) -> np.ndarray:
    """The mask in an image array: its alpha when the alpha is not fully opaque (A1111's rule for masks drawn on
    a transparent layer), otherwise the first channel of the colour (the reference's rule)."""
    if array.ndim == 3 and array.shape[2] == 4 and int(array[:, :, 3].min()) < 255:
        return np.ascontiguousarray(array[:, :, 3])
    return np.ascontiguousarray(hwc3(array)[:, :, 0])


def decode_region_mask(value, *, unit: int | None = None, allow_paths: bool = False) -> np.ndarray | None:
    """`effective_region_mask` as HxW float32 in [0, 1] (first channel / 255, as the reference), or None."""
    if value is None:
        return None
    array = read_array(value, field="effective_region_mask", unit=unit, allow_paths=allow_paths)
    return mask_channel(array).astype(np.float32) / 255.0


def read_array(value, *, field: str, unit: int | None = None, allow_paths: bool = False) -> np.ndarray:
    """Any single accepted image value -> uint8 array HxW, HxWx3 or HxWx4."""
    try:
        if isinstance(value, str):
            if allow_paths and not _URL.match(value.strip()) and os.path.isfile(value):
                array = _pil_to_array(_open_file(value))
            else:
                array = _pil_to_array(decode_base64_image(value))
        elif isinstance(value, np.ndarray):
            array = value
        elif isinstance(value, Image.Image):
            array = _pil_to_array(value)
        else:
            raise InputError(f"expected base64 text or an image array, got {type(value).__name__}")
        return _checked_array(array)
    except ControlNetError as exc:
        exc.unit = exc.unit if exc.unit is not None else unit
        exc.field = field  # helpers name no field: the caller knows which one this is
        raise exc.at() from None


def _checked_array(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint8:
        raise InputError(f"image arrays must be uint8, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise InputError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"the image is empty (shape {array.shape})")
    if array.shape[0] * array.shape[1] > MAX_PIXELS:
        raise InputError(f"image of {array.shape[1]}x{array.shape[0]} is larger than {MAX_PIXELS} pixels")
    return np.ascontiguousarray(array)


def decode_base64_image(text: str) -> Image.Image:
    """A fully loaded PIL image from base64 text (optionally a data URI); InputError otherwise."""
    text = text.strip()
    if not text:
        raise InputError("Invalid encoded image: empty")
    if _URL.match(text):
        raise InputError("Invalid encoded image: URLs are not fetched; send the image itself as base64")
    prefix = _DATA_URI.match(text)
    if prefix:
        text = text[prefix.end():]
    elif text.startswith("data:"):
        raise InputError("Invalid encoded image: only base64 data URIs are accepted")
    text = _WHITESPACE.sub("", text)
    text += "=" * (-len(text) % 4)  # some clients drop the padding
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InputError("Invalid encoded image: not base64 (a file path or URL is never read)") from None
    return _open(io.BytesIO(data))


def _open_file(path: str) -> Image.Image:
    with open(path, "rb") as f:
        return _open(io.BytesIO(f.read()))


def _open(stream) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(stream, formats=ALLOWED_FORMATS)
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise InputError(f"image of {width}x{height} is larger than {MAX_PIXELS} pixels")
            image.load()
    except InputError:
        raise
    except UnidentifiedImageError:
        # Pillow's own text names the stream object (`<_io.BytesIO object at 0x...>`), which says nothing
        raise InputError(f"Invalid encoded image: the data is not an image in a format read here "
                         f"({', '.join(ALLOWED_FORMATS)})") from None
    except (OSError, ValueError, SyntaxError, EOFError,
            Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"Invalid encoded image: {exc}") from None
    return image


def _pil_to_array(image: Image.Image) -> np.ndarray:
    """uint8 HxW / HxWx3 / HxWx4 from any PIL mode (palette and grey-alpha expanded, 16-bit scaled down)."""
    mode = image.mode
    if mode in ("RGB", "RGBA", "L"):
        return np.asarray(image)
    if mode == "1":
        return np.asarray(image.convert("L"))
    if mode in ("P", "PA", "LA", "La", "RGBa") or "transparency" in image.info:
        return np.asarray(image.convert("RGBA"))
    if mode.startswith("I") or mode == "F":
        wide = np.asarray(image).astype(np.float64)
        # 16-bit files (depth maps) onto 8 bits; a 32-bit "I" image is 16-bit data when it exceeds 8 bits
        if mode.startswith("I;16") or (wide.size and wide.max() > 255):
            wide = wide / 257.0
        return np.clip(np.round(wide), 0, 255).astype(np.uint8)
    return np.asarray(image.convert("RGB"))


def init_image_array(image: Image.Image) -> np.ndarray:
    """A host's img2img init image (PIL, any mode) as the HxWx3 uint8 a unit without its own image reads:
    the reference's HWC3 of the array, so grey is replicated and RGBA is composited over white (PIL's
    convert("RGB") would drop the alpha, leaving the colour under transparent pixels)."""
    return hwc3(_pil_to_array(image))


# --- what the preprocessor sees -------------------------------------------------------------------------
def control_input(rgba: np.ndarray, *, keep_rgba: bool, ignore_mask: bool = False) -> np.ndarray:
    """The array a preprocessor gets from a unit's RGBA input, by the reference's rule:

    inpaint and CLIP preprocessors keep RGBA; for others a mask that is neither (almost) empty nor (almost)
    full is a drawing on the canvas and becomes the input ("canvas scribble"), unless `ignore_mask` (the
    `controlnet_ignore_noninpaint_mask` setting); otherwise the RGB.
    """
    if keep_rgba:
        return rgba
    alpha = rgba[:, :, 3]
    if ignore_mask or bool((alpha <= 5).all()) or bool((alpha >= 250).all()):
        return np.ascontiguousarray(rgba[:, :, :3])
    return hwc3(np.ascontiguousarray(alpha))
