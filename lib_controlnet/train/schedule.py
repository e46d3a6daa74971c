"""The noise schedule a base model was trained with, for training on top of it: q(x_t | x_0) and timesteps.

SD1.x (and SD2.x, SDXL) were trained with 1000 steps of a "scaled linear" beta schedule from 0.00085 to 0.012
(`linear_start`/`linear_end` in v1-inference.yaml; the standalone host's samplers use the same). Original
checkpoints also carry it as the `alphas_cumprod` buffer; when one does, that is the schedule used here.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

TIMESTEPS = 1000
LINEAR_START, LINEAR_END = 0.00085, 0.012
ALPHAS_CUMPROD_KEY = "alphas_cumprod"


def sd_alphas_cumprod(steps: int = TIMESTEPS, start: float = LINEAR_START, end: float = LINEAR_END) -> torch.Tensor:
    """ldm's `make_beta_schedule("linear")`: betas linear in sqrt space, then the cumulative product of 1 - beta."""
    betas = torch.linspace(start**0.5, end**0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


class NoiseSchedule:
    def __init__(self, alphas_cumprod: torch.Tensor):
        a = alphas_cumprod.double().flatten()
        if a.ndim != 1 or a.numel() < 2 or not bool(((a > 0) & (a <= 1)).all()) or not bool((a[1:] <= a[:-1]).all()):
            raise ValueError("alphas_cumprod must be a decreasing sequence in (0, 1]")
        self.alphas_cumprod = a

    @classmethod
    def from_checkpoint(cls, state_dict: Mapping[str, torch.Tensor] | None) -> NoiseSchedule:
        """The checkpoint's own `alphas_cumprod` when it has one, else SD's default."""
        if state_dict is not None and ALPHAS_CUMPROD_KEY in state_dict:
            return cls(state_dict[ALPHAS_CUMPROD_KEY])
        return cls(sd_alphas_cumprod())

    @property
    def steps(self) -> int:
        return self.alphas_cumprod.numel()

    def sample_timesteps(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randint(0, self.steps, (batch,), generator=generator)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps."""
        a = self.alphas_cumprod.to(x0.device)[t.to(x0.device)].to(x0.dtype).view(-1, *[1] * (x0.ndim - 1))
        return a.sqrt() * x0 + (1 - a).sqrt() * noise
