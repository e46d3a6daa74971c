"""Classifier-free guidance: one UNet call per step with the cond rows first and the uncond rows after.

Rows [0, B) carry the prompt, rows [B, 2B) the negative prompt (A1111's and the core's `CfgBatchRows`
layout), so the ControlNet hook is told exactly which rows are cond. At CFG scale 1 the uncond half would
cancel out; it is not computed at all.
"""

from __future__ import annotations

import torch
from torch import nn

from lib_controlnet.hook.cfg_rows import CfgBatchRows


class GuidedEps:
    """`eps_fn` for `sampling.sample`: (scaled latents, t, fraction) -> guided eps."""

    def __init__(self, unet: nn.Module, cond: torch.Tensor, uncond: torch.Tensor, cfg_scale: float,
                 rows: CfgBatchRows):
        self.unet = unet
        self.cond = cond
        self.uncond = uncond
        self.cfg_scale = cfg_scale
        self.rows = rows
        self.calls = 0

    @property
    def uses_uncond(self) -> bool:
        return self.cfg_scale != 1.0

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: torch.Tensor, fraction: float) -> torch.Tensor:
        batch = x.shape[0]
        if self.uses_uncond:
            x_in = torch.cat([x, x])
            context = torch.cat([self.cond, self.uncond])
            self.rows.start_step(batch, batch, fraction=fraction)
        else:
            x_in, context = x, self.cond
            self.rows.start_step(batch, 0, fraction=fraction)
        timesteps = torch.full((x_in.shape[0],), float(t), device=x.device, dtype=torch.float32)
        out = self.unet(x_in, timesteps, context=context.to(x.dtype))
        self.calls += 1
        if not self.uses_uncond:
            return out
        eps_cond, eps_uncond = out[:batch], out[batch:]
        return eps_uncond + self.cfg_scale * (eps_cond - eps_uncond)
