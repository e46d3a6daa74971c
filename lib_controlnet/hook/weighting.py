"""Per-residual scales for the control modes: small pure functions with the reference's exact constants.

Residual i (0 = shallowest input block, last = middle block) of a unit is multiplied by scales[i]:

- Balanced: `weight` on every residual, for cond and uncond rows alike.
- "My prompt is more important": weight · 0.825^(12−i), i = 0…12 (middle = index 12), both halves.
- "ControlNet is more important": the same soft scales, cond rows only (uncond rows get nothing, so the
  hook runs the ControlNet on the cond rows alone).

SDXL ControlNets have 10 residuals; like the reference (and Forge) they take the first 10 values of the
13-long SD1.5 list, so the SDXL middle block gets 0.825^3 ≈ 0.5615, not 1.0.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..enums import ControlMode
from ..errors import InputError

SOFT_BASE = 0.825  # lllyasviel's "magic number": 0.825**12 < 0.1, the shallowest layer's share
SD15_OUTPUTS = 13


def soft_scales(num_outputs: int) -> list[float]:
    """0.825^(12−i) for i = 0…12, truncated to the model's residual count (SDXL: the first 10)."""
    full = [SOFT_BASE ** (SD15_OUTPUTS - 1 - i) for i in range(SD15_OUTPUTS)]
    return full[:num_outputs]


def uses_soft_scales(mode: ControlMode, *, force_soft: bool = False) -> bool:
    return force_soft or mode != ControlMode.BALANCED


def control_on_uncond(mode: ControlMode) -> bool:
    """Whether uncond rows receive the unit's residuals (and so whether the ControlNet runs on them)."""
    return mode != ControlMode.CONTROL


def layer_scales(
    mode: ControlMode,
    weight: float,
    num_outputs: int,
    advanced_weighting: Sequence[float] | None = None,
    *,
    force_soft: bool = False,
    soft: Sequence[float] | None = None,
) -> list[float]:
    """The multiplier of each residual. `advanced_weighting` replaces the whole list, as in the reference.

    `force_soft` applies the soft ramp in Balanced mode too (the hires pass of canny/mlsd units); `soft` is
    the kind's own ramp (T2I-Adapters: 0.25, 0.62, 0.825, 1.0), by default 0.825^(12−i).
    """
    if advanced_weighting is not None:
        check_advanced_weighting(advanced_weighting, num_outputs)
        return [float(w) for w in advanced_weighting]
    if uses_soft_scales(mode, force_soft=force_soft):
        return [weight * s for s in (soft_scales(num_outputs) if soft is None else soft)]
    return [float(weight)] * num_outputs


def check_advanced_weighting(values: Sequence[float], num_outputs: int, *, unit: int | None = None) -> None:
    # A list of the wrong length is an error: the reference zips it and silently drops residuals.
    if len(values) != num_outputs:
        raise InputError(
            f"needs exactly {num_outputs} values for this model (13 for SD1.x/2.x ControlNets, 10 for SDXL, "
            f"4 for T2I-Adapters), got {len(values)}",
            unit=unit,
            field="advanced_weighting",
        )
