"""T2I-Adapter units: encoder-stream features (full/light adapters) and context tokens (style adapter).

Both compute their model's output once per hint size (hires fix: once more at its size) and then only add
it at every step: adapters see neither the latent, the timestep nor the text.

Feature scales (the reference): Balanced `w` on all four; the other two modes `w·(0.25, 0.62, 0.825, 1.0)`;
"ControlNet is more important" adds them to the cond rows only. Style tokens: `w ×` the 8 tokens, appended
to the cond rows' context (uncond rows get zero tokens, so every row keeps one length), in every mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..errors import IncompatibleModelError, InputError
from ..hook.call import UNetCall
from ..hook.effect import HookTarget
from .hinted_unit import HintedUnit

SDXL_OUTPUTS = 10  # an SDXL-layout UNet: 9 input blocks + the middle block
STYLE_ENCODER = "clip_vision"  # the preprocessor (label t2ia_style_clipvision, CLIP ViT-L/14) the tokens come from


def repeat_rows(value: torch.Tensor, batch: int, rows: tuple[int, ...] | None, *, unit: int) -> torch.Tensor:
    """N per-image rows spread over a batch (each cond/uncond chunk repeats them in order; 1 broadcasts)."""
    n = value.shape[0]
    if n == 1:
        return value if rows is None else value.expand(len(rows), *value.shape[1:])
    if batch % n:
        raise InputError(f"{n} control images cannot be spread over a batch of {batch} rows", unit=unit, field="image")
    value = value.repeat(batch // n, *([1] * (value.ndim - 1)))
    return value if rows is None else value[list(rows)]


@dataclass(eq=False)
class AdapterUnit(HintedUnit):
    """`model.features(hint)` -> 4 features, added after `model.injection_points` of the encoder."""

    soft_table: ClassVar[Sequence[float]] = (0.25, 0.62, 0.825, 1.0)

    @property
    def kind_label(self) -> str:
        return "T2I-Adapter"

    def check(self, target: HookTarget) -> None:
        super().check(target)
        model = self.model
        sdxl_unet = target.num_outputs == SDXL_OUTPUTS
        if model.arch.is_sdxl != sdxl_unet:
            raise IncompatibleModelError(
                f"{model.path.name} is an {'SDXL' if model.arch.is_sdxl else 'SD1.x'} T2I-Adapter but this UNet has "
                f"the {'SDXL' if sdxl_unet else 'SD1.x/2.x'} layout ({target.num_outputs - 1} input blocks)",
                unit=self.index, field="model",
            )

    def contribute(self, call: UNetCall) -> None:
        rows = call.rows(self.cond_only)
        if rows is not None and not rows:
            return  # an uncond-only call with ControlNet priority: nothing for this unit
        for point, value in zip(self.model.injection_points, self.features_for(call, rows)):
            if value is not None:
                call.add_feature(point, value, rows)

    def features_for(self, call: UNetCall, rows: tuple[int, ...] | None) -> list[torch.Tensor | None]:
        """This call's scaled features, from the features of its hint size (computed once, then reused)."""
        x = call.x
        size = (x.shape[-2] * 8, x.shape[-1] * 8)
        hires = call.info.hires
        key = ("scaled", size, hires, rows, call.batch, x.device, x.dtype)
        scaled = self._cache.get(key)
        if scaled is None:
            scaled = []
            for feature, scale in zip(self.raw_features(size, call), self.scales(hires)):
                if scale == 0:
                    scaled.append(None)
                    continue
                value = self.shaped(feature.to(x.device, x.dtype), scale)
                scaled.append(repeat_rows(value, call.batch, rows, unit=self.index))
            self._cache[key] = scaled
        return scaled

    def raw_features(self, size: tuple[int, int], call: UNetCall) -> list[torch.Tensor]:
        key = ("features", size)
        features = self._cache.get(key)
        if features is None:
            with call.placement.running(self.model, low_vram=self.low_vram) as model:
                features = self._cache[key] = model.features(self.hint_at(size))
        return features


@dataclass(eq=False)
class StyleUnit(HintedUnit):
    """`hint` holds CLIP-L vision tokens [N, L, 1024] (not an image); `model.tokens` -> [N, 8, context]."""

    @property
    def kind_label(self) -> str:
        return "T2I style adapter"

    @property
    def num_scales(self) -> int:
        return 1

    def __post_init__(self):
        if self.advanced_weighting is not None:
            raise InputError("the T2I style adapter has no layers to weight: it appends context tokens",
                             unit=self.index, field="advanced_weighting")
        if self.effective_region_mask is not None:
            raise InputError("the T2I style adapter appends context tokens: a region mask cannot apply to it",
                             unit=self.index, field="effective_region_mask")
        super().__post_init__()

    @classmethod
    def from_embeddings(cls, model, embeddings: Sequence[dict], *, unit, index: int, hr_option) -> StyleUnit:
        """The unit of a t2ia_style_clipvision unit: its images' CLIP-L `last_hidden_state`s, stacked."""
        tokens = [e.get("last_hidden_state") if isinstance(e, dict) else None for e in embeddings]
        if any(t is None for t in tokens):
            raise InputError("the T2I style adapter takes CLIP vision embeddings with a last_hidden_state",
                             unit=index, field="module")
        return cls(model, torch.cat([t.reshape(-1, *t.shape[-2:]) for t in tokens]), weight=unit.weight,
                   guidance_start=unit.guidance_start, guidance_end=unit.guidance_end,
                   control_mode=unit.control_mode, hr_option=hr_option, low_vram=unit.low_vram, index=index)

    def check_hint(self, t: torch.Tensor) -> None:
        width = self.model.token_width
        if t.ndim == 4:
            raise InputError(
                f"{self.model.path.name} is a T2I style adapter: it takes CLIP-L image tokens from the "
                f"t2ia_style_clipvision preprocessor (the '{STYLE_ENCODER}' CLIP vision encoder), not an image map",
                unit=self.index, field="module",
            )
        if t.ndim != 3 or t.shape[-1] != width:
            raise InputError(f"CLIP image tokens must be [N, L, {width}], got {tuple(t.shape)}",
                             unit=self.index, field="image")

    def scales(self, hires: bool) -> list[float]:
        return [float(self.weight)]  # the reference scales the tokens by the weight in every control mode

    def hint_at(self, size):
        return self.hint  # tokens have no size

    def edit_context(self, call: UNetCall) -> None:
        rows = call.rows(cond_only=True)  # () in an uncond-only call: zero tokens for every row
        tokens = self.tokens_for(call)
        tokens = tokens[:1] if rows == () else repeat_rows(tokens, call.batch, rows, unit=self.index)
        call.append_context(tokens, rows)

    def tokens_for(self, call: UNetCall) -> torch.Tensor:
        key = ("tokens", call.context.device, call.context.dtype)
        tokens = self._cache.get(key)
        if tokens is None:
            with call.placement.running(self.model, low_vram=self.low_vram) as model:
                tokens = model.tokens(self.hint)
            tokens = self._cache[key] = (tokens * self.weight).to(call.context.device, call.context.dtype)
        return tokens
