"""Classifier-free guidance: one UNet call per step with the cond rows first and the uncond rows after.

Rows [0, B) carry the prompt, rows [B, 2B) the negative prompt (A1111's and the core's `CfgBatchRows`
layout), so the ControlNet hook is told exactly which rows are cond. At CFG scale 1 the uncond half would
cancel out; it is not computed at all. SDXL's second input `y` (pooled text + sizes) travels the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lib_controlnet.hook.cfg_rows import CfgBatchRows


@dataclass
class PassConditioning:
    """One side of CFG for one pass: the text context and (SDXL) `y`, one row per image."""

    context: torch.Tensor
    y: torch.Tensor | None = None


class GuidedEps:
    """`eps_fn` for `sampling.sample`: (scaled latents, t, fraction) -> the guided model output."""

    def __init__(self, unet: nn.Module, cond, uncond, cfg_scale: float, rows: CfgBatchRows, *, hires: bool = False):
        self.unet = unet
        self.cond = cond if isinstance(cond, PassConditioning) else PassConditioning(cond)
        self.uncond = uncond if isinstance(uncond, PassConditioning) else PassConditioning(uncond)
        self.cfg_scale = cfg_scale
        self.rows = rows
        self.hires = hires
        self.calls = 0

    @property
    def uses_uncond(self) -> bool:
        return self.cfg_scale != 1.0

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: torch.Tensor, fraction: float) -> torch.Tensor:
        batch = x.shape[0]
        c, u = self.cond, self.uncond
        if self.uses_uncond:
            x_in = torch.cat([x, x])
            context = torch.cat([c.context, u.context])
            y = None if c.y is None else torch.cat([c.y, u.y])
            self.rows.start_step(batch, batch, fraction=fraction, hires=self.hires)
        else:
            x_in, context, y = x, c.context, c.y
            self.rows.start_step(batch, 0, fraction=fraction, hires=self.hires)
        timesteps = torch.full((x_in.shape[0],), float(t), device=x.device, dtype=torch.float32)
        extra = {} if y is None else {"y": y.to(x.dtype)}
        out = self.unet(x_in, timesteps, context=context.to(x.dtype), **extra)
        self.calls += 1
        if not self.uses_uncond:
            return out
        out_cond, out_uncond = out[:batch], out[batch:]
        return out_uncond + self.cfg_scale * (out_cond - out_uncond)
