"""Revision (SDXL, no model): prompt with an image through SDXL's vector conditioning.

The unit's CLIP-G image embedding (its images averaged), noised once per generation by Noise Augmentation
a (q_sample at t = int(1000·a) on ldm's default linear schedule), times the weight, replaces the pooled-text
part of `y` (its first 1280 values) on the cond rows; the uncond rows get zeros there. Several Revision
units add up. revision_ignore_prompt — or a generation whose prompt and negative prompt are both empty —
also zeroes the text context. As the reference, less: a unit at weight 0 or outside its start/end does
nothing at all (the reference would still zero the pooled text of every row).
"""

from __future__ import annotations

import torch

from ..errors import IncompatibleModelError
from ..hook.call import CallInfo, UNetCall
from ..hook.effect import Effect, HookTarget
from ..hook.host import sd_alphas_cumprod
from . import ControlRequest, Controls
from .window import Window

POOLED = 1280  # SDXL's y: [pooled CLIP-G text (1280), size/crop/target embeddings (1536)]
SCHEDULE = sd_alphas_cumprod(1e-4, 2e-2)  # ldm's make_beta_schedule("linear") with its defaults


class Revision(Effect):
    def __init__(self, embeds: torch.Tensor, *, weight: float, noise_augmentation: float, ignore_prompt: bool,
                 window: Window, seed: int, index: int = 0):
        self.embeds = embeds.float().mean(dim=0, keepdim=True)  # [1, 1280]
        self.weight = float(weight)
        self.t = max(0, min(999, int(float(noise_augmentation) * 1000)))
        self.ignore_prompt = ignore_prompt
        self.window = window
        self.seed = int(seed)
        self.index = index
        self._noised: torch.Tensor | None = None

    def check(self, target: HookTarget) -> None:
        if target.family not in (None, "sdxl") or not hasattr(target.unet, "label_emb"):
            raise IncompatibleModelError("preprocessor revision only works with SDXL checkpoints",
                                         unit=self.index, field="module")

    def active(self, info: CallInfo) -> bool:
        return self.weight != 0 and self.window.contains(info)

    def noised(self) -> torch.Tensor:
        if self._noised is None:
            noise = torch.randn(self.embeds.shape, generator=torch.Generator().manual_seed(self.seed))
            a_bar = SCHEDULE.double()[self.t]
            self._noised = (a_bar.sqrt() * self.embeds + (1 - a_bar).sqrt() * noise).float()
        return self._noised

    def edit_context(self, call: UNetCall) -> None:
        if call.y is None:
            raise IncompatibleModelError("revision needs SDXL's vector conditioning (y), which this call has not",
                                         unit=self.index, field="module")
        cond = torch.ones(call.batch, 1, dtype=call.y.dtype, device=call.y.device)
        if call.info.cond_rows is not None:
            cond.zero_()
            cond[list(call.info.cond_rows)] = 1
        contribution = self.noised().to(call.y.device, call.y.dtype) * self.weight * cond
        y = call.y.clone()
        if call.scratch.get("revision"):  # an earlier Revision unit already replaced the pooled text: add up
            y[:, :POOLED] += contribution
        else:
            y[:, :POOLED] = contribution
        call.scratch["revision"] = True
        call.replace_y(y)
        if self.ignore_prompt and call.context is not None:
            call.replace_context(torch.zeros_like(call.context))


def build(request: ControlRequest) -> Controls:
    if not request.embeddings:
        raise ValueError("revision needs its CLIP-G image embeddings")
    embeds = torch.cat([e["image_embeds"] for e in request.embeddings])
    if embeds.shape[-1] != POOLED:
        raise IncompatibleModelError(f"revision needs CLIP-G image embeddings ({POOLED} values), got "
                                     f"{embeds.shape[-1]}: use clip_g.pth", unit=request.index, field="module")
    ignore = request.module == "revision_ignore_prompt" or request.empty_prompts
    return Controls(effects=[Revision(embeds, weight=request.weight, noise_augmentation=request.params.slider_1,
                                      ignore_prompt=ignore, window=Window.of(request), seed=request.seed,
                                      index=request.index)])
