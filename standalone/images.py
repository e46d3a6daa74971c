"""Pixels in and out: PIL images <-> [-1, 1] tensors, and inpainting masks at pixel and latent size."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps


def flatten(image: Image.Image) -> Image.Image:
    """RGB; a transparent init image over white, as A1111 flattens it (img2img_background_color, #ffffff by
    default) before it encodes or overlays it. ControlNet units reading the init image composite it over
    white too, so the control and the latent see the same picture."""
    if image.mode == "RGBA":
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        background.paste(image, mask=image)
        image = background
    return image.convert("RGB")


def to_tensor(image: Image.Image, width: int, height: int) -> torch.Tensor:
    """[1, 3, H, W] in [-1, 1]; resized to the target ("Just resize", A1111's img2img resize mode 0)."""
    image = flatten(image)
    if image.size != (width, height):
        image = image.resize((width, height), Image.LANCZOS)
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """[N, 3, H, W] in [-1, 1] -> RGB images, clamped and rounded as A1111 saves them."""
    array = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(a.permute(1, 2, 0).cpu().numpy()) for a in array]


def prepare_mask(mask: Image.Image, width: int, height: int, *, blur: int, invert: bool) -> Image.Image:
    """The pixel mask as A1111 uses it: white = repaint. Grey/alpha masks are read as luminance."""
    if mask.mode == "RGBA" and mask.getextrema()[-1] != (255, 255):
        # a mask drawn on a transparent layer: the opaque strokes mark the area (A1111's create_binary_mask)
        mask = mask.getchannel("A").point(lambda v: 255 if v > 128 else 0)
    mask = mask.convert("L")
    if invert:
        mask = ImageOps.invert(mask)
    if mask.size != (width, height):
        mask = mask.resize((width, height), Image.LANCZOS)
    if blur > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    return mask


def latent_keep_mask(mask: Image.Image, latent_width: int, latent_height: int) -> torch.Tensor:
    """[1, 1, h, w]: 1 where the init latent is kept. A1111 resizes the mask to the latent size and rounds it."""
    small = np.asarray(mask.resize((latent_width, latent_height), Image.BICUBIC), dtype=np.float32) / 255.0
    repaint = torch.from_numpy(np.around(small))
    return (1 - repaint)[None, None]


def overlay(generated: Image.Image, init: Image.Image, mask: Image.Image) -> Image.Image:
    """Put the init image's own pixels back outside the (blurred) mask, as A1111 does after inpainting."""
    return Image.composite(generated, flatten(init).resize(generated.size, Image.LANCZOS), mask)
