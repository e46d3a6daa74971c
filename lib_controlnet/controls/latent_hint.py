"""A unit's control image in latent space (reference-only, colorfix, inpaint_only work on latents).

Encoded once per generation through the host's VAE (`HostInfo.encode_image`) when the hook attaches —
before sampling, where the host's VAE may run — for the first-pass map and, with hires fix, the hires map.
"""

from __future__ import annotations

import torch

from ..errors import IncompatibleModelError, InputError
from ..hook.host import HostInfo


class LatentHint:
    def __init__(self, pixels: torch.Tensor, pixels_hires: torch.Tensor | None = None, *, unit: int = 0):
        """`pixels`: [N, 3, H, W] in [0, 1] at the hint size (8x the latent)."""
        self.pixels = [p for p in (pixels, pixels_hires) if p is not None]
        self.unit = unit
        self._latents: list[torch.Tensor] | None = None

    def encode(self, host: HostInfo | None) -> None:
        if self._latents is not None:
            return
        if host is None or host.encode_image is None:
            raise IncompatibleModelError("this host gives ControlNet no VAE encoder, which this control needs",
                                         unit=self.unit, field="module")
        self._latents = [host.encode_image(p).float() for p in self.pixels]

    def at(self, x: torch.Tensor) -> torch.Tensor:
        """The latents whose size is nearest x's (the first pass or the hires pass), one per row of x."""
        if self._latents is None:
            raise RuntimeError("LatentHint.at before encode")
        size = x.shape[-2:]
        latent = min(self._latents, key=lambda z: abs(z.shape[-2] - size[0]) + abs(z.shape[-1] - size[1]))
        if latent.shape[-2:] != size:
            latent = torch.nn.functional.interpolate(latent, size=size, mode="bilinear", align_corners=False)
        n, batch = latent.shape[0], x.shape[0]
        if n != 1 and batch % n:
            raise InputError(f"{n} control images cannot be spread over a batch of {batch} rows", unit=self.unit,
                             field="image")
        return latent.to(x.device).repeat(batch // n, 1, 1, 1) if n != batch else latent.to(x.device)
