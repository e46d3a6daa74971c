"""A unit bound to a loaded control model and its hint tensors: what the UNet hook consumes.

The user-level unit (UI, API, infotext) is resolved into this once per generation: model loaded, image
preprocessed and resized to the hint size(s). Everything here is per-call arithmetic on those tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..enums import ControlMode, HiResFixOption
from ..errors import InputError
from ..hook.weighting import check_advanced_weighting, control_on_uncond, layer_scales
from .controlnet import ControlModel


@dataclass(eq=False)
class BoundUnit:
    model: ControlModel
    hint: torch.Tensor  # [1 or N, C, H, W] in [0, 1], at 8x the latent size of the (first) pass
    hint_hires: torch.Tensor | None = None  # the same map at the hires-fix size
    weight: float = 1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    control_mode: ControlMode = ControlMode.BALANCED
    advanced_weighting: Sequence[float] | None = None
    effective_region_mask: torch.Tensor | None = None  # [H, W] or [1, 1, H, W] in [0, 1]
    global_average_pooling: bool | None = None  # None: the model decides (shuffle models)
    hr_option: HiResFixOption = HiResFixOption.BOTH
    soft_injection_in_hires: bool = False  # canny/mlsd preprocessors ask for the soft ramp in the hires pass
    low_vram: bool = False
    index: int = 0  # the unit's position, for error messages
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.control_mode = ControlMode.parse(self.control_mode, unit=self.index, field="control_mode")
        self.hr_option = HiResFixOption.parse(self.hr_option, unit=self.index, field="hr_option")
        if self.global_average_pooling is None:
            self.global_average_pooling = self.model.global_average_pooling
        if not 0.0 <= self.guidance_start <= self.guidance_end <= 1.0:
            raise InputError(
                f"guidance_start ({self.guidance_start}) and guidance_end ({self.guidance_end}) must satisfy "
                "0 <= start <= end <= 1",
                unit=self.index,
                field="guidance_start",
            )
        if self.advanced_weighting is not None:
            check_advanced_weighting(self.advanced_weighting, self.model.num_outputs, unit=self.index)
        for name, t in (("image", self.hint), ("image", self.hint_hires)):
            if t is not None and (t.ndim != 4 or t.shape[1] != self.model.net.arch.hint_channels):
                raise InputError(
                    f"hint must be [N, {self.model.net.arch.hint_channels}, H, W], got {tuple(t.shape)}",
                    unit=self.index,
                    field=name,
                )

    # --- when the unit acts --------------------------------------------------------------------------
    def scales(self, hires: bool) -> list[float]:
        return layer_scales(
            self.control_mode,
            self.weight,
            self.model.num_outputs,
            self.advanced_weighting,
            force_soft=hires and self.soft_injection_in_hires,
        )

    def active(self, fraction: float, hires: bool) -> bool:
        """The reference's rule: stopped when fraction < start or fraction > end (strict), per pass."""
        if fraction < self.guidance_start or fraction > self.guidance_end:
            return False
        if self.hr_option == HiResFixOption.LOW_RES_ONLY and hires:
            return False
        if self.hr_option == HiResFixOption.HIGH_RES_ONLY and not hires:
            return False
        return any(s != 0 for s in self.scales(hires))

    @property
    def cond_only(self) -> bool:
        """Uncond rows get nothing (ControlNet priority, or pooled shuffle): don't compute them at all."""
        return not control_on_uncond(self.control_mode) or bool(self.global_average_pooling)

    # --- tensors ---------------------------------------------------------------------------------------
    def guided_hint(self, x: torch.Tensor, rows: tuple[int, ...] | None) -> torch.Tensor:
        """The hint encoder's output for this call, computed once per size and row set.

        The hint encoder sees neither the timestep nor the text, so its output is reused across steps.
        """
        size = (x.shape[-2] * 8, x.shape[-1] * 8)
        hint = self._hint_at(size)
        if hint.shape[0] == 1:
            rows = None  # one image broadcasts over every row
        key = ("guided", size, rows, self.model.device, self.model.dtype)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = self.model.encode_hint(self._match_batch(hint, x.shape[0], rows))
        return cached

    def _hint_at(self, size: tuple[int, int]) -> torch.Tensor:
        """The hint at 8x the latent's size (the closer of the low-res and hires maps, resized if needed)."""
        key = ("hint", size)
        hint = self._cache.get(key)
        if hint is None:
            hint = self.hint
            if self.hint_hires is not None:

                def distance(t):
                    return abs(t.shape[-2] - size[0]) + abs(t.shape[-1] - size[1])

                hint = self.hint_hires if distance(self.hint_hires) < distance(self.hint) else self.hint
            if tuple(hint.shape[-2:]) != size:
                hint = F.interpolate(hint.float(), size=size, mode="bilinear", align_corners=False)
            hint = self._cache[key] = hint
        return hint

    def _match_batch(self, hint: torch.Tensor, batch: int, rows: tuple[int, ...] | None) -> torch.Tensor:
        n = hint.shape[0]
        if n == 1:
            return hint
        if batch % n:
            raise InputError(
                f"{n} control images cannot be spread over a batch of {batch} rows", unit=self.index, field="image"
            )
        # N images for N prompts: each cond/uncond chunk of the batch repeats them in order.
        hint = hint.repeat(batch // n, 1, 1, 1)
        return hint if rows is None else hint[list(rows)]

    def region_mask(self, like: torch.Tensor) -> torch.Tensor | None:
        if self.effective_region_mask is None:
            return None
        size = tuple(like.shape[-2:])
        key = ("mask", size, like.device, like.dtype)
        mask = self._cache.get(key)
        if mask is None:
            m = self.effective_region_mask.float()
            m = m.reshape(1, 1, *m.shape[-2:])
            mask = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
            mask = self._cache[key] = mask.to(like.device, like.dtype)
        return mask

    def clear_cache(self) -> None:
        self._cache.clear()
