"""What the host tells the hook about its model beyond one call: the noise schedule and its VAE.

Effects that work in x0 space (post-UNet corrections) or on latents of their own hints (VAE-encoded) read
these; plain ControlNets need none of it. Both hosts fill what they have; `None` means "not available" and
an effect that needs it says so by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class HostInfo:
    """alphas_cumprod: the model's discrete schedule ᾱ_t (1000 values), indexed by the UNet's timestep.
    prediction: what the UNet predicts, "eps" or "v".
    encode_image: pixels [N, 3, H, W] in [0, 1] -> the latents the UNet sees (scale factor applied).
    family: "sd1", "sd2" or "sdxl".
    """

    alphas_cumprod: torch.Tensor | None = None
    prediction: str = "eps"
    encode_image: Callable[[torch.Tensor], torch.Tensor] | None = None
    family: str | None = None


def sd_alphas_cumprod(linear_start: float = 0.00085, linear_end: float = 0.012, steps: int = 1000) -> torch.Tensor:
    """ᾱ_t of Stable Diffusion's "scaled linear" schedule (v1/v2/XL configs): betas = linspace(√s, √e)²."""
    betas = torch.linspace(linear_start**0.5, linear_end**0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).float()
