"""tile_colorfix(+sharp): keep the hint's low frequencies (colours) in every step's x0 prediction.

`x0 = x0_pred − blur(x0_pred, k) + blur(VAE(hint), k)`, k = Variation (threshold_a), doubled in the hires
pass; +sharp: the uncond rows get `d·blur(x0, k) + (1 − d)·x0` with d = Sharpness·0.01 (threshold_b), so
CFG pushes the cond rows' details further. The tile ControlNet itself runs beside this as a normal unit.
"""

from __future__ import annotations

import torch

from ..hook.call import UNetCall
from ..units.hint_size import hint_tensor, stack_hints
from . import ControlRequest, Controls
from .correction import LatentCorrection
from .latent_hint import LatentHint
from .schedule import box_blur
from .window import Window


class ColorFix(LatentCorrection):
    def __init__(self, latents: LatentHint, window: Window, weight: float, *, variation: int,
                 sharpness: float | None = None, index: int = 0):
        super().__init__(latents, window, weight, index=index)
        self.variation = int(variation)
        self.sharpness = sharpness  # None: plain colorfix

    def x0(self, x0_pred: torch.Tensor, x0_hint: torch.Tensor, call: UNetCall) -> torch.Tensor:
        k = self.variation * (2 if call.info.hires else 1)
        x0 = x0_pred - box_blur(x0_pred, k) + box_blur(x0_hint, k)
        if self.sharpness is not None:
            d = self.sharpness * 0.01
            blurred = d * box_blur(x0, k) + (1 - d) * x0
            cond = torch.ones(x0.shape[0], 1, 1, 1, dtype=x0.dtype, device=x0.device)
            if call.info.cond_rows is not None:
                cond.zero_()
                cond[list(call.info.cond_rows)] = 1
            x0 = cond * x0 + (1 - cond) * blurred
        return x0


def build(request: ControlRequest) -> Controls:
    pixels = stack_hints([hint_tensor(m[:, :, :3]) for m in request.maps])
    hires = stack_hints([hint_tensor(m[:, :, :3]) for m in request.maps_hires]) if request.maps_hires else None
    sharp = request.module.endswith("+sharp")
    effect = ColorFix(LatentHint(pixels, hires, unit=request.index), Window.of(request), request.weight,
                      variation=int(request.params.slider_1),
                      sharpness=float(request.params.slider_2) if sharp else None, index=request.index)
    return Controls(effects=[effect])
