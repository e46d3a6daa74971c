"""Sizes of the control hint and the map-to-tensor step, with the reference extension's formulas.

* The hint is made at the generation's pixel size aligned down to 8 (the ControlNet's hint encoder
  downsamples it 8x to the latent size); hires fix gets a second hint at the hires size.
* Pixel perfect picks the preprocessor resolution from the input and target sizes.
* A detected map is brought to the hint size by the unit's resize mode (the "high quality" resize that
  keeps line, binary and segmentation maps intact lives in `preprocessors.map_resize`).
* The map becomes the NCHW float tensor in [0, 1] the core wants; an RGBA (inpaint) map becomes the
  reference's inpaint hint, masked pixels = -1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from annotator.util import hwc3

from ..enums import ResizeMode
from ..errors import InputError
from ..preprocessors.map_resize import resize_to_target

LATENT_FACTOR = 8


def align_to_latent(pixels: int) -> int:
    """Pixels rounded down to a whole number of latent cells."""
    return (int(pixels) // LATENT_FACTOR) * LATENT_FACTOR


def hint_size(width: int, height: int) -> tuple[int, int]:
    """(h, w) of the hint for a generation of `width` x `height` (txt2img and img2img)."""
    h, w = align_to_latent(height), align_to_latent(width)
    if h <= 0 or w <= 0:
        raise InputError(f"a {width}x{height} generation has no latent pixels", field="size")
    return h, w


def hires_hint_size(width: int, height: int, hr_scale: float,
                    hr_resize_x: int = 0, hr_resize_y: int = 0) -> tuple[int, int]:
    """(h, w) of the hires-fix hint: `hr_scale` times the first pass, or the requested hires size.

    With only one of hr_resize_x / hr_resize_y given, the other follows the first pass's aspect ratio as
    A1111 computes it (the reference would use 0 there).
    """
    if hr_resize_x == 0 and hr_resize_y == 0:
        hr_h, hr_w = int(height * hr_scale), int(width * hr_scale)
    elif hr_resize_y == 0:
        hr_h, hr_w = hr_resize_x * height // width, hr_resize_x
    elif hr_resize_x == 0:
        hr_h, hr_w = hr_resize_y, hr_resize_y * width // height
    else:
        hr_h, hr_w = hr_resize_y, hr_resize_x  # A1111 crops the upscaled latent to exactly this
    return hint_size(hr_w, hr_h)


def pixel_perfect_resolution(image: np.ndarray | Sequence[int], target_h: int, target_w: int,
                             resize_mode: ResizeMode | str | int) -> int:
    """The preprocessor resolution at which the detected map needs no rescaling after the resize mode.

    `image` is the input array or its (height, width). Resize and Fill fits the image inside the target
    (smaller scale); the other modes cover it (larger scale). Uses the first-pass target, as the reference.
    """
    raw_h, raw_w = (image.shape[:2] if isinstance(image, np.ndarray) else tuple(image)[:2])
    k_h, k_w = float(target_h) / float(raw_h), float(target_w) / float(raw_w)
    mode = ResizeMode.parse(resize_mode, field="resize_mode")
    k = min(k_h, k_w) if mode is ResizeMode.OUTER_FIT else max(k_h, k_w)
    return int(np.round(k * float(min(raw_h, raw_w))))


def fit_detected_map(detected_map: np.ndarray, resize_mode: ResizeMode | str | int, h: int, w: int,
                     *, keep_alpha: bool = False) -> np.ndarray:
    """The detected map at exactly h x w by the unit's resize mode (the reference's `detectmap_proc`).

    `keep_alpha` is for inpaint preprocessors (the reference's `"inpaint" in module`): their RGBA map keeps
    its mask channel, and padding added by Resize and Fill is marked as area to paint. Other maps are made
    HxWx3 first (grey replicated, RGBA composited over white).
    """
    if not keep_alpha or detected_map.ndim != 3 or detected_map.shape[2] != 4:
        detected_map = hwc3(detected_map)
    return np.ascontiguousarray(resize_to_target(detected_map, resize_mode, h, w))


def hint_tensor(detected_map: np.ndarray) -> torch.Tensor:
    """uint8 HxWxC map -> [1, C', H, W] float32 in [0, 1]; an HxWx4 map becomes the inpaint hint (C' = 3)."""
    if detected_map.ndim == 2:
        detected_map = detected_map[:, :, None]
    if detected_map.ndim != 3 or detected_map.dtype != np.uint8:
        raise InputError(f"a detected map must be uint8 HxWxC, got {detected_map.dtype} {detected_map.shape}",
                         field="image")
    tensor = torch.from_numpy(np.ascontiguousarray(detected_map)).float().div_(255.0)
    tensor = tensor.permute(2, 0, 1).unsqueeze(0).contiguous()
    return inpaint_hint(tensor) if tensor.shape[1] == 4 else tensor


def inpaint_hint(rgba: torch.Tensor) -> torch.Tensor:
    """The reference's inpaint protocol on a [N, 4, H, W] hint in [0, 1]: pixels whose mask is over one half
    become -1 in every channel (the inpaint ControlNet was trained to paint there), the rest keep their RGB."""
    if rgba.ndim != 4 or rgba.shape[1] != 4:
        raise InputError(f"an inpaint hint must be [N, 4, H, W], got {tuple(rgba.shape)}", field="image")
    masked = (rgba[:, 3:4] > 0.5).to(rgba.dtype)
    return rgba[:, :3] * (1.0 - masked) - masked


def stack_hints(hints: Sequence[torch.Tensor]) -> torch.Tensor:
    """Several [1, C, H, W] hints of one unit (one per input image) as one [N, C, H, W] batch."""
    if not hints:
        raise InputError("no control images", field="image")
    shapes = {tuple(h.shape[1:]) for h in hints}
    if len(shapes) != 1:
        raise InputError(f"control images of one unit must share one size, got {sorted(shapes)}", field="image")
    return torch.cat(list(hints), dim=0)
