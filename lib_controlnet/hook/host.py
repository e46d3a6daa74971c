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
