"""Base of the controls that correct the UNet's output in x0 space after each call (colorfix, inpaint_only).

Per active call: x0 = what the output predicts at the UNet's input x_t; the subclass's `x0(...)` changes it;
the output that predicts the new x0 is blended with the UNet's by w = clamp(weight, 0, 1):
`out' = w·out(x0') + (1 − w)·out`. ε- and v-predicting models alike (the host's `HostInfo.prediction`).
"""

from __future__ import annotations

import torch

from ..errors import IncompatibleModelError
from ..hook.call import CallInfo, UNetCall
from ..hook.effect import Effect, ModuleHooks
from .latent_hint import LatentHint
from .schedule import coefficients, output_from_x0, predicted_x0
from .window import Window, blend_weight


class LatentCorrection(Effect):
    def __init__(self, latents: LatentHint, window: Window, weight: float, *, index: int = 0):
        self.latents = latents
        self.window = window
        self.weight = blend_weight(weight)
        self.index = index
        self.host = None

    def active(self, info: CallInfo) -> bool:
        return self.weight > 0 and self.window.contains(info)

    def attach(self, hooks: ModuleHooks) -> None:
        host = hooks.host
        if host is None or host.alphas_cumprod is None:
            raise IncompatibleModelError("this host gives ControlNet no noise schedule, which this control needs",
                                         unit=self.index, field="module")
        self.host = host
        self.latents.encode(host)

    def contribute(self, call: UNetCall) -> None:
        call.correct_output(self._correct)

    def _correct(self, out: torch.Tensor, call: UNetCall) -> torch.Tensor:
        host = self.host
        xt = call.x[:, :4].float()  # 9-channel inpainting UNets: the latent is the first 4
        a, s = coefficients(host.alphas_cumprod, call.timesteps, xt)
        x0 = predicted_x0(out.float(), xt, a, s, host.prediction)
        corrected = output_from_x0(self.x0(x0, self.latents.at(xt), call), xt, a, s, host.prediction)
        w = self.weight
        return (corrected * w + out.float() * (1 - w)).to(out.dtype)

    def x0(self, x0_pred: torch.Tensor, x0_hint: torch.Tensor, call: UNetCall) -> torch.Tensor:
        raise NotImplementedError
