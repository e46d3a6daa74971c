"""The denoising loop over a diffusers scheduler: txt2img from pure noise, img2img from a noised init latent.

The loop owns what the scheduler does not: which steps run (A1111's img2img rule), the sampling progress
reported to ControlNet (fraction = step index / steps in this pass, as the reference extension computes it),
the inpainting blend, the per-image noise generators, progress callbacks and interruption, and v-prediction:
a v model's output is turned into eps before anything else sees it (schedulers, the blend), with
eps = s·x_in + α·v for the model's input x_in = α·x0 + s·ε (α = 1/√(1+σ²), s = σ·α; k-diffusion's
CompVisVDenoiser gives the same denoised x0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

EpsFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]  # (scaled model input, t, fraction) -> eps
V_PREDICTION = "v_prediction"


@dataclass(frozen=True)
class Plan:
    """The steps of one pass: `timesteps[begin:]` of a schedule of `steps`."""

    steps: int
    begin: int

    @property
    def count(self) -> int:
        return self.steps - self.begin


def txt2img_plan(steps: int) -> Plan:
    return Plan(steps, 0)


def img2img_plan(steps: int, denoising_strength: float) -> Plan:
    """A1111 (img2img_fix_steps off): t_enc = int(min(strength, 0.999) · steps), then t_enc + 1 steps are run
    from schedule index steps − t_enc − 1. So strength 0 still takes one step at the smallest noise level."""
    t_enc = int(min(max(denoising_strength, 0.0), 0.999) * steps)
    return Plan(steps, steps - t_enc - 1)


@dataclass(frozen=True)
class LatentSpace:
    """Maps the scheduler's latents and eps to the clean-latent prediction x0 and back."""

    variance_preserving: bool

    def coefficients(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.variance_preserving:
            alpha = 1 / torch.sqrt(sigma**2 + 1)
            return alpha, sigma * alpha
        return torch.ones_like(sigma), sigma

    def x0(self, x: torch.Tensor, eps: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        alpha, s = self.coefficients(sigma)
        return (x - s * eps) / alpha

    def eps(self, x: torch.Tensor, x0: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        alpha, s = self.coefficients(sigma)
        return (x - alpha * x0) / s


@dataclass
class InpaintBlend:
    """A1111's latent inpainting: after every model call the x0 prediction keeps `init` where `keep` is 1."""

    init: torch.Tensor  # scaled init latent [B, 4, h, w]
    keep: torch.Tensor  # [1 or B, 1, h, w], 1 = keep the init latent (unmasked), 0 = generate

    def apply(self, x0: torch.Tensor) -> torch.Tensor:
        return self.init * self.keep + x0 * (1 - self.keep)


def sample(
    scheduler,
    space: LatentSpace,
    plan: Plan,
    noise: torch.Tensor,
    eps_fn: EpsFn,
    *,
    init: torch.Tensor | None = None,
    blend: InpaintBlend | None = None,
    generators: list[torch.Generator] | None = None,
    on_step: Callable[[int, int, torch.Tensor], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    prediction_type: str = "epsilon",
) -> tuple[torch.Tensor, bool]:
    """Run one pass; returns (latents, interrupted). `noise` is unit-variance, one row per image.

    `on_step(done, total, latents)` runs after every step and may raise to abort (the exception propagates);
    `should_stop()` is polled before every step and ends the pass early, returning the latents so far.
    """
    scheduler.set_timesteps(plan.steps, device=noise.device)
    timesteps = scheduler.timesteps[plan.begin :]
    scheduler.set_begin_index(plan.begin)
    if init is None:
        # x_T = σ_max·noise in k-diffusion's terms, as A1111 starts; diffusers' DPM-Solver would start from
        # unit noise in its own space, which is 0.2% larger
        _, scale = space.coefficients(scheduler.sigmas[plan.begin].to(noise.device, noise.dtype))
        latents = noise * scale
    else:
        latents = scheduler.add_noise(init, noise, timesteps[:1])
    for i, t in enumerate(timesteps):
        if should_stop is not None and should_stop():
            return latents, True
        model_input = scheduler.scale_model_input(latents, t)
        eps = eps_fn(model_input, t, i / plan.count)
        sigma = scheduler.sigmas[plan.begin + i].to(latents.device, latents.dtype)
        if prediction_type == V_PREDICTION:
            alpha, s = LatentSpace(True).coefficients(sigma)
            eps = s * model_input + alpha * eps
        if blend is not None:
            eps = space.eps(latents, blend.apply(space.x0(latents, eps, sigma)), sigma)
        latents = scheduler.step(eps, t, latents, generator=generators).prev_sample
        if on_step is not None:
            on_step(i + 1, plan.count, latents)
    return latents, False
