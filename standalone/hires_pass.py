"""One batch's hires-fix pass: upscale the first pass's latents, noise them from the same seeds, denoise again."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .guidance import GuidedEps
from .hires import LATENT_UPSCALERS, PIXEL_UPSCALERS, HiresFix, truncate, upscale_latents
from .images import to_pil, to_tensor
from .sampling import LatentSpace, Plan, sample

LATENT_CHANNELS = 4


@dataclass
class HiresPass:
    model: object  # StableDiffusionModel
    hires: HiresFix
    target: tuple[int, int, int, int]  # (upscale_to_x, upscale_to_y, truncate_x, truncate_y)
    eps_fn: GuidedEps
    plan: Plan | None  # None: strength 0, no sampling

    def upscale(self, latents: torch.Tensor) -> torch.Tensor:
        to_x, to_y, tx, ty = self.target
        name = self.hires.upscaler_name
        if name in LATENT_UPSCALERS:
            mode, antialias = LATENT_UPSCALERS[name]
            up = upscale_latents(latents.float(), mode, antialias, to_x, to_y)
        else:
            vae = self.model.vae
            images = to_pil(vae.decode(latents.float()))
            resized = [im.resize((to_x, to_y), PIXEL_UPSCALERS[name]) for im in images]
            up = vae.encode(torch.cat([to_tensor(im, to_x, to_y) for im in resized]).to(latents.device))
        return truncate(up, tx, ty).to(latents.dtype)

    def run(self, latents: torch.Tensor, seeds: list[int], spec, schedule, should_stop, on_step):
        """(latents at the hires size, interrupted)."""
        init = self.upscale(latents)
        if self.plan is None:
            return init, False
        _, _, h, w = init.shape
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]  # A1111: a new ImageRNG, same seeds
        noise = torch.stack([torch.randn(LATENT_CHANNELS, h, w, generator=g) for g in generators])
        return sample(spec.make(schedule), LatentSpace(spec.variance_preserving), self.plan,
                      noise.to(init.device, init.dtype), self.eps_fn, init=init, generators=generators,
                      on_step=on_step, should_stop=should_stop, prediction_type=self.model.prediction_type)
