"""img2img "Inpaint area: Only masked": crop the control image exactly as A1111 1.10 crops the init image.

A1111 prepares the mask (binary from an alpha layer, optionally inverted, Gaussian-blurred along x and y),
takes the bounding box of what is masked plus padding, widens it to the generation's aspect ratio, and
generates only that region at the full width x height. A control image must see the same region, or the
control and the picture disagree. Like the reference, each channel is first brought to the mask's size by
the unit's resize mode, cropped, then resized to width x height with A1111's "resize and fill".

A mask with nothing masked gives no crop (A1111 then falls back to whole-picture img2img; the reference
would crop to an inverted, empty box).
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageOps

from ..enums import ResizeMode
from ..errors import InputError

# A1111's resize_image modes; its 3 ("latent upscale") resizes images like 0.
_A1111_MODE = {ResizeMode.RESIZE: 0, ResizeMode.INNER_FIT: 1, ResizeMode.OUTER_FIT: 2}
_LANCZOS = Image.Resampling.LANCZOS


def wants_masked_crop(module: str, crop_input_image: bool, only_masked: bool, has_mask: bool,
                      generation_param_keys=()) -> bool:
    """The reference's rule: img2img with a mask and "Only masked", for every module but the reference_* ones,
    when the unit asks for it or an upscale script (its infotext key says "upscale", not "Hires") tiles the
    picture with A1111's mask."""
    upscale_script = any("upscale" in k.lower() and "Hires" not in k for k in generation_param_keys)
    return "reference" not in module and only_masked and has_mask and (crop_input_image or upscale_script)


def prepare_mask(mask, *, invert: bool = False, blur_x: float = 0, blur_y: float = 0,
                 round_alpha: bool = True) -> np.ndarray:
    """The img2img mask as A1111 1.10 prepares it (`StableDiffusionProcessingImg2Img.init`): HxW uint8.

    An RGBA mask whose alpha is not fully opaque is its alpha (thresholded at 128 when `round_alpha`);
    anything else is its grey value. `blur_x` / `blur_y` are A1111's mask_blur_x / mask_blur_y.
    """
    image = mask if isinstance(mask, Image.Image) else _pil(mask)
    if image.mode == "RGBA" and image.getextrema()[-1] != (255, 255):
        image = image.split()[-1].convert("L")
        if round_alpha:
            image = image.point(lambda v: 255 if v > 128 else 0)
    else:
        image = image.convert("L")
    if invert:
        image = ImageOps.invert(image)
    array = np.array(image)
    if blur_x > 0:
        array = cv2.GaussianBlur(array, (_kernel_size(blur_x), 1), blur_x)
    if blur_y > 0:
        array = cv2.GaussianBlur(array, (1, _kernel_size(blur_y)), blur_y)
    return array


def _kernel_size(sigma: float) -> int:
    return 2 * int(2.5 * sigma + 0.5) + 1


def crop_region(mask: np.ndarray, padding: int, width: int, height: int) -> tuple[int, int, int, int] | None:
    """(x1, y1, x2, y2) A1111 crops for a prepared mask, or None when nothing is masked.

    The bounding box of the non-zero pixels, grown by `padding` (clamped to the image), then widened or
    heightened around its centre to the width:height ratio and shifted back inside the image.
    """
    if mask.ndim != 2:
        raise InputError(f"the inpaint mask must be HxW, got shape {mask.shape}", field="mask")
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    image_h, image_w = mask.shape
    x1, y1, x2, y2 = int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
    if padding:
        x1, y1 = max(x1 - padding, 0), max(y1 - padding, 0)
        x2, y2 = min(x2 + padding, image_w), min(y2 + padding, image_h)
    return _expand_to_ratio((x1, y1, x2, y2), width, height, image_w, image_h)


def _expand_to_ratio(region, width, height, image_w, image_h):
    """A1111's expand_crop_region: grow the short side of the box to the processing aspect ratio."""
    x1, y1, x2, y2 = region
    box_ratio = (x2 - x1) / (y2 - y1)
    target_ratio = width / height
    if box_ratio > target_ratio:
        y1, y2 = _grow(y1, y2, int((x2 - x1) / target_ratio - (y2 - y1)), image_h)
    else:
        x1, x2 = _grow(x1, x2, int((y2 - y1) * target_ratio - (x2 - x1)), image_w)
    return x1, y1, x2, y2


def _grow(low: int, high: int, extra: int, limit: int) -> tuple[int, int]:
    low -= extra // 2
    high += extra - extra // 2
    if high >= limit:  # past the far edge: shift back
        low -= high - limit
        high = limit
    if low < 0:  # past the near edge: shift forward
        high -= low
        low = 0
    return low, min(high, limit)


def a1111_resize(image: Image.Image, mode: int, width: int, height: int) -> Image.Image:
    """A1111's `images.resize_image` for single-channel images (which it always resizes with Lanczos).

    0: stretch; 1: cover and centre-crop; 2: fit, centre, and fill the bands by stretching the edge rows or
    columns of the resized image.
    """
    if mode not in (1, 2):
        return image.resize((width, height), resample=_LANCZOS)
    ratio, src_ratio = width / height, image.width / image.height
    if mode == 1:
        src_w = width if ratio > src_ratio else image.width * height // image.height
        src_h = height if ratio <= src_ratio else image.height * width // image.width
    else:
        src_w = width if ratio < src_ratio else image.width * height // image.height
        src_h = height if ratio >= src_ratio else image.height * width // image.width
    resized = image.resize((src_w, src_h), resample=_LANCZOS)
    result = Image.new(image.mode, (width, height))
    result.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
    if mode == 2 and ratio < src_ratio:
        fill = height // 2 - src_h // 2
        if fill > 0:
            result.paste(resized.resize((width, fill), box=(0, 0, width, 0)), box=(0, 0))
            result.paste(resized.resize((width, fill), box=(0, resized.height, width, resized.height)),
                         box=(0, fill + src_h))
    elif mode == 2 and ratio > src_ratio:
        fill = width // 2 - src_w // 2
        if fill > 0:
            result.paste(resized.resize((fill, height), box=(0, 0, 0, height)), box=(0, 0))
            result.paste(resized.resize((fill, height), box=(resized.width, 0, resized.width, height)),
                         box=(fill + src_w, 0))
    return result


def crop_control_image(image: np.ndarray, mask: np.ndarray, *, padding: int, width: int, height: int,
                       resize_mode: ResizeMode | str | int) -> np.ndarray:
    """The control image (HxWxC uint8) cropped to the region A1111 generates, at width x height.

    `mask` is the prepared mask (`prepare_mask`), `padding` A1111's inpaint_full_res_padding, width/height
    the generation size. Returned unchanged when the mask masks nothing (no crop happens then).
    """
    if image.ndim != 3 or image.dtype != np.uint8:
        raise InputError(f"the control image must be uint8 HxWxC, got {image.dtype} {image.shape}", field="image")
    region = crop_region(mask, padding, width, height)
    if region is None:
        return image
    mode = _A1111_MODE[ResizeMode.parse(resize_mode, field="resize_mode")]
    mask_h, mask_w = mask.shape
    channels = []
    for c in range(image.shape[2]):
        channel = a1111_resize(Image.fromarray(np.ascontiguousarray(image[:, :, c])), mode, mask_w, mask_h)
        channel = a1111_resize(channel.crop(region), 2, width, height)
        channels.append(np.asarray(channel))
    return np.stack(channels, axis=2)


def _pil(array: np.ndarray) -> Image.Image:
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
        raise InputError("the inpaint mask must be a uint8 image", field="mask")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4)):
        return Image.fromarray(np.ascontiguousarray(array))
    raise InputError(f"the inpaint mask must be HxW, HxWx3 or HxWx4, got shape {array.shape}", field="mask")
