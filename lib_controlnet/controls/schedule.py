"""The diffusion arithmetic the post-UNet controls need: x0 from the UNet's output and back, q_sample, and
the reference's box blur. Pure functions of ᾱ_t (the host's `alphas_cumprod`) and the UNet's own input
x_t = √ᾱ·x0 + √(1−ᾱ)·ε, for eps- and v-predicting models alike."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def coefficients(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor, like: torch.Tensor):
    """(√ᾱ_t, √(1−ᾱ_t)) per row, shaped to broadcast over `like`. Timesteps are rounded, as the reference."""
    t = torch.round(timesteps.float()).long().clamp(0, alphas_cumprod.shape[0] - 1).cpu()
    a_bar = alphas_cumprod.double()[t].to(like.device)
    shape = (-1,) + (1,) * (like.ndim - 1)
    return a_bar.sqrt().reshape(shape), (1 - a_bar).sqrt().reshape(shape)


def predicted_x0(out: torch.Tensor, xt: torch.Tensor, a: torch.Tensor, s: torch.Tensor, prediction: str):
    if prediction == "v":  # v = √ᾱ·ε − √(1−ᾱ)·x0
        return a * xt - s * out
    return (xt - s * out) / a


def output_from_x0(x0: torch.Tensor, xt: torch.Tensor, a: torch.Tensor, s: torch.Tensor, prediction: str):
    """The UNet output (ε or v) that predicts `x0` at `xt`."""
    if prediction == "v":
        return (a * xt - x0) / s
    return (xt - a * x0) / s


def q_sample(x0: torch.Tensor, noise: torch.Tensor, a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return a * x0 + s * noise


def box_blur(x: torch.Tensor, k: int) -> torch.Tensor:
    """The reference's `blur`: replicate-pad by k, then the mean over a (2k+1)² window."""
    if k <= 0:
        return x
    y = F.pad(x, (k, k, k, k), mode="replicate")
    return F.avg_pool2d(y, (2 * k + 1, 2 * k + 1), stride=1)
