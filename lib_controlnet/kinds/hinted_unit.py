"""What every unit driven by a control image shares, whatever its model kind: `HintedUnit`.

The user-level unit (UI, API, infotext) is resolved into one of these once per generation: model loaded,
image preprocessed and resized to the hint size(s). Here: when the unit acts (start/end window, hires-fix
option, zero scales), its per-layer scales, its hint at the size of a call, and its region mask. The kinds
(ControlNet, T2I-Adapter, ...) subclass it and say what the unit adds to a UNet call (`contribute`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..enums import ControlMode, HiResFixOption, UnionControlType
from ..errors import IncompatibleModelError, InputError
from ..hook.call import CallInfo
from ..hook.effect import Effect, HookTarget
from ..hook.weighting import check_advanced_weighting, control_on_uncond, layer_scales


@dataclass(eq=False)
class HintedUnit(Effect):
    model: Any
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

    # What a kind says about itself: how many scales its outputs take, the soft ramp, the hint's channels.
    @property
    def num_scales(self) -> int:
        return self.model.num_outputs

    soft_table: ClassVar[Sequence[float] | None] = None  # the soft ramp; None: 0.825^(12-i)

    @property
    def hint_channels(self) -> int:
        return self.model.hint_channels

    def __post_init__(self):
        self.control_mode = ControlMode.parse(self.control_mode, unit=self.index, field="control_mode")
        self.hr_option = HiResFixOption.parse(self.hr_option, unit=self.index, field="hr_option")
        if self.global_average_pooling is None:
            self.global_average_pooling = bool(getattr(self.model, "global_average_pooling", False))
        if not 0.0 <= self.guidance_start <= self.guidance_end <= 1.0:
            raise InputError(
                f"guidance_start ({self.guidance_start}) and guidance_end ({self.guidance_end}) must satisfy "
                "0 <= start <= end <= 1",
                unit=self.index,
                field="guidance_start",
            )
        if self.advanced_weighting is not None:
            check_advanced_weighting(self.advanced_weighting, self.num_scales, unit=self.index)
        for t in (self.hint, self.hint_hires):
            if t is not None:
                self.check_hint(t)

    def check_hint(self, t: torch.Tensor) -> None:
        """Kinds whose input is not an image map (CLIP tokens) say what they take instead."""
        if t.ndim != 4 or t.shape[1] != self.hint_channels:
            raise InputError(
                f"hint must be [N, {self.hint_channels}, H, W], got {tuple(t.shape)}", unit=self.index, field="image"
            )

    # --- Effect ----------------------------------------------------------------------------------------
    def check(self, target: HookTarget) -> None:
        model = self.model
        if target.family is not None and model.family != target.family:
            raise IncompatibleModelError(
                f"{model.path.name} is a {model.family} {self.kind_label} but the checkpoint is {target.family}",
                unit=self.index, field="model",
            )

    @property
    def kind_label(self) -> str:
        return "ControlNet"

    # What a kind takes from the user-level unit beyond the common fields, and gives back to its infotext.
    @classmethod
    def options_from(cls, unit, preprocessor) -> dict:
        """Extra constructor arguments from the `units.unit.Unit` and its preprocessor (none by default)."""
        return {}

    def infotext_fields(self) -> dict:
        """`Unit` fields to record as they were resolved for this kind. The panel sets `union_control_type`
        from its Control Type radio whatever the model; only union units read it, so the others record none."""
        return {"union_control_type": UnionControlType.UNKNOWN}

    def models(self) -> Sequence[Any]:
        return (self.model,)

    def active(self, info: CallInfo) -> bool:
        return self.active_at(info.fraction, info.hires)

    def release(self) -> None:
        self._cache.clear()

    clear_cache = release

    # --- when the unit acts ----------------------------------------------------------------------------
    def scales(self, hires: bool) -> list[float]:
        return layer_scales(
            self.control_mode,
            self.weight,
            self.num_scales,
            self.advanced_weighting,
            force_soft=hires and self.soft_injection_in_hires,
            soft=self.soft_table,
        )

    def active_at(self, fraction: float, hires: bool) -> bool:
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
    def hint_at(self, size: tuple[int, int]) -> torch.Tensor:
        """The hint at `size` (the closer of the low-res and hires maps, resized if needed)."""
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

    def match_batch(self, hint: torch.Tensor, batch: int, rows: tuple[int, ...] | None) -> torch.Tensor:
        """N images for a batch: each cond/uncond chunk of the batch repeats them in order (1 broadcasts)."""
        n = hint.shape[0]
        if n == 1:
            return hint
        if batch % n:
            raise InputError(
                f"{n} control images cannot be spread over a batch of {batch} rows", unit=self.index, field="image"
            )
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

    def shaped(self, value: torch.Tensor, scale: float) -> torch.Tensor:
        """One output scaled, masked by the region, pooled for GAP models: the reference's order (3.3)."""
        value = value * scale
        mask = self.region_mask(value)
        if mask is not None:
            value = value * mask
        if self.global_average_pooling:
            value = value.mean(dim=(2, 3), keepdim=True)
        return value
