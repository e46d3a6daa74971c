"""inpaint_only: the inpaint ControlNet paints the masked area while everything else is kept.

Per step (after the UNet): `x0 = x0_pred·m + VAE(image)·(1 − m)` with m the mask max-pooled to the latent
(kernel 10, stride 8, padding 1: the reference's slight dilation), blended by clamp(weight, 0, 1). After
decoding: `y = m'·generated + (1 − m')·image` with m' the mask dilated and box-blurred by σ
(`control_net_inpaint_blur_sigma`, 7), so the unmasked pixels are the input's exactly.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import IncompatibleModelError
from ..hook.call import UNetCall
from . import ControlRequest, Controls
from .correction import LatentCorrection
from .latent_hint import LatentHint
from .schedule import coefficients
from .window import Window


def _pixels(maps: list[np.ndarray]) -> torch.Tensor:
    """[N, 4, H, W] float in [0, 1] from HxWx4 uint8 RGBA maps (alpha = mask, 1 = paint)."""
    return torch.from_numpy(np.stack(maps)).permute(0, 3, 1, 2).float().div(255.0).contiguous()


def latent_mask(alpha: torch.Tensor) -> torch.Tensor:
    """[N, 1, H, W] pixel mask -> latent size (H/8), dilated a little, as the reference pools it."""
    return F.max_pool2d(alpha, (10, 10), stride=(8, 8), padding=1)


class InpaintOnly(LatentCorrection):
    def __init__(self, rgba: torch.Tensor, rgba_hires: torch.Tensor | None, window: Window, weight: float, *,
                 index: int = 0):
        latents = LatentHint(rgba[:, :3], None if rgba_hires is None else rgba_hires[:, :3], unit=index)
        super().__init__(latents, window, weight, index=index)
        self.masks = [latent_mask(t[:, 3:4]) for t in (rgba, rgba_hires) if t is not None]

    def mask_at(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        mask = min(self.masks, key=lambda m: abs(m.shape[-2] - size[0]) + abs(m.shape[-1] - size[1]))
        if mask.shape[-2:] != size:
            mask = F.interpolate(mask, size=size, mode="nearest")
        n, batch = mask.shape[0], x.shape[0]
        return (mask.repeat(batch // n, 1, 1, 1) if n != batch else mask).to(x.device, x.dtype)

    def x0(self, x0_pred: torch.Tensor, x0_hint: torch.Tensor, call: UNetCall) -> torch.Tensor:
        m = self.mask_at(x0_pred)
        return x0_pred * m + x0_hint * (1 - m)


def pixel_blend_mask(alpha: np.ndarray, sigma: int) -> np.ndarray:
    """The final blend's mask: dilate by a σ×σ square, then a σ×σ box blur (σ < 1: the mask as it is)."""
    m = alpha.astype(np.float32)
    if sigma >= 1:
        m = cv2.dilate(m, np.ones((sigma, sigma), dtype=np.uint8))
        m = cv2.blur(m, (sigma, sigma))
    return m


class PasteBack:
    """The pixel post-process: unmasked pixels come back from the input image."""

    def __init__(self, maps: list[np.ndarray], sigma: int):
        rgba = [m.astype(np.float32) / 255.0 for m in maps]
        self.raw = [torch.from_numpy(np.ascontiguousarray(m[:, :, :3].transpose(2, 0, 1))) for m in rgba]
        self.mask = [torch.from_numpy(pixel_blend_mask(m[:, :, 3], sigma))[None] for m in rgba]

    def __call__(self, image: torch.Tensor, index: int) -> torch.Tensor:
        i = index if index < len(self.raw) else 0
        raw, m = self.raw[i], self.mask[i]
        if raw.shape[-2:] != image.shape[-2:]:  # another extension changed the output size: fit ours to it
            raw = F.interpolate(raw[None], size=image.shape[-2:], mode="bilinear", align_corners=False)[0]
            m = F.interpolate(m[None], size=image.shape[-2:], mode="bilinear", align_corners=False)[0]
        raw, m = raw.to(image.device, image.dtype), m.to(image.device, image.dtype)
        return (m * image.clamp(0, 1) + (1 - m) * raw).clamp(0, 1)


class FilledNoise:
    """inpaint_only+lama: the first pass starts from `q_sample(VAE(LaMa's fill), t=999, noise)` instead of
    pure noise, so the sampler already sees the fill's layout (the reference's HackedImageRNG). Noise of
    another size (a hires pass) is left as it is."""

    def __init__(self, pixels: torch.Tensor, *, unit: int = 0):
        self.latents = LatentHint(pixels, unit=unit)

    def __call__(self, noise: torch.Tensor, host) -> torch.Tensor:
        self.latents.encode(host)
        if host.alphas_cumprod is None:
            raise IncompatibleModelError("this host gives ControlNet no noise schedule, which inpaint_only+lama needs",
                                         unit=self.latents.unit, field="module")
        z = self.latents._latents[0]
        if z.shape[-2:] != noise.shape[-2:]:
            return noise
        z = self.latents.at(noise).to(noise.dtype)
        a, s = coefficients(host.alphas_cumprod, torch.full((noise.shape[0],), 999.0), noise)
        return (a * z + s * noise).to(noise.dtype)


def build(request: ControlRequest) -> Controls:
    if any(m.ndim != 3 or m.shape[2] != 4 for m in request.maps):
        raise ValueError("inpaint_only needs RGBA maps (the image with its mask as alpha)")
    rgba = _pixels(request.maps)
    rgba_hires = _pixels(request.maps_hires) if request.maps_hires else None
    effect = InpaintOnly(rgba, rgba_hires, Window.of(request), request.weight, index=request.index)
    final = request.maps_hires or request.maps  # the reference pastes back at the final (hires) size
    controls = Controls(effects=[effect], post=[PasteBack(final, request.inpaint_blur_sigma)])
    if request.module.endswith("+lama"):
        controls.noise.append(FilledNoise(rgba[:, :3], unit=request.index))
    return controls
