"""A ControlNet Union / ProMax unit, and several units of one union model run as ONE forward.

Per UNet call the hook hands every active unit of one union model over together (`group_key`). They are
split into sets that can share a forward (`_fusable_sets`): units whose residuals would be post-processed
alike, i.e. the same rows (a "ControlNet is more important" unit runs on the cond rows only), the same
per-residual ramp (Balanced: flat; the two other modes and the hires soft injection: 0.825^(12-i);
`advanced_weighting`: its list), the same region mask (or none) and pooling, and a known control type.
Start/end and hires-fix options only decide which units are active in a call, so they need not match.

A set of k >= 2 runs diffusers' multi-condition forward: one-hot over the k types, each unit's weight w_i
as that hint's `conditioning_scale` (its token and its features are scaled by w_i inside the forward,
`guided = Σ w_i·(c_i + alpha_i)`), and the residuals then take only the common ramp. With
`advanced_weighting` a unit's list is the ramp and its hint weight is 1. A set of one is the plain
single-hint forward, the residuals scaled by the unit's own scales, as a ControlNet's. The fused hint is
timestep-independent and cached per set, rows and size, so a step costs one ControlNet forward whatever k.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..enums import UnionControlType
from ..errors import InputError
from ..hook.call import UNetCall
from ..hook.weighting import layer_scales
from .controlnet_unit import BoundUnit


@dataclass(eq=False)
class UnionUnit(BoundUnit):
    control_type: UnionControlType = UnionControlType.UNKNOWN

    def __post_init__(self):
        super().__post_init__()
        self.control_type = UnionControlType.parse(self.control_type, unit=self.index, field="union_control_type")
        slot = self.slot
        slots = self.model.num_control_type
        if slot is not None and slot >= slots:
            raise InputError(
                f"{self.control_type.value} is task slot {slot}, but {self.model.path.name} has {slots} slots "
                f"({', '.join(t.value for t in list(UnionControlType)[:slots])}); Tile and Inpaint need ProMax",
                unit=self.index, field="union_control_type",
            )

    @property
    def slot(self) -> int | None:
        """The task slot, None for Unknown (no task: the reference's plain path)."""
        return self.control_type.slot

    @classmethod
    def options_from(cls, unit, preprocessor) -> dict:
        """The control type: the unit's `union_control_type`, else the first of the preprocessor's tags that
        a slot serves (canny -> Hard Edge), else Unknown."""
        chosen = unit.union_control_type
        if chosen == UnionControlType.UNKNOWN:
            derived = (UnionControlType.from_tag(t) for t in getattr(preprocessor, "tags", ()))
            chosen = next((t for t in derived if t != UnionControlType.UNKNOWN), UnionControlType.UNKNOWN)
        return {"control_type": chosen}

    @property
    def kind_label(self) -> str:
        return "ControlNet Union"

    def infotext_fields(self) -> dict:
        return {"union_control_type": self.control_type}

    def group_key(self):
        return ("controlnet_union", id(self.model))

    @classmethod
    def contribute_group(cls, effects: Sequence[UnionUnit], call: UNetCall) -> None:
        for members in _fusable_sets(effects, call.info.hires):
            _run_set(members, call)

    def contribute(self, call: UNetCall) -> None:
        _run_set([self], call)

    # --- what a set needs of its members ---------------------------------------------------------------
    def ramp(self, hires: bool) -> tuple[float, ...]:
        """The per-residual scales without the weight (the list itself with advanced_weighting)."""
        if self.advanced_weighting is not None:
            return tuple(float(w) for w in self.advanced_weighting)
        return tuple(layer_scales(self.control_mode, 1.0, self.num_scales, force_soft=hires and
                                  self.soft_injection_in_hires, soft=self.soft_table))

    @property
    def hint_scale(self) -> float:
        return 1.0 if self.advanced_weighting is not None else float(self.weight)

    def shares_forward_with(self, other: UnionUnit, hires: bool) -> bool:
        return (
            self.slot is not None and other.slot is not None
            and self.cond_only == other.cond_only
            and bool(self.global_average_pooling) == bool(other.global_average_pooling)
            and self.ramp(hires) == other.ramp(hires)
            and _same_mask(self.effective_region_mask, other.effective_region_mask)
        )


def _same_mask(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a is b or (a.shape == b.shape and torch.equal(a, b))


def _fusable_sets(units: Sequence[UnionUnit], hires: bool) -> list[list[UnionUnit]]:
    """Units in order, each joining the first set whose first member it can share a forward with."""
    sets: list[list[UnionUnit]] = []
    for unit in units:
        home = next((s for s in sets if s[0].shares_forward_with(unit, hires)), None)
        if home is None:
            sets.append([unit])
        else:
            home.append(unit)
    return sets


def _run_set(members: Sequence[UnionUnit], call: UNetCall) -> None:
    lead = members[0]
    rows = call.rows(lead.cond_only)
    if rows is not None and not rows:
        return  # an uncond-only call: nothing for these units to add
    hires = call.info.hires
    types = [m.slot for m in members if m.slot is not None]
    with call.placement.running(lead.model, low_vram=any(m.low_vram for m in members)) as model:
        guided = _fused_hint(members, call.x, rows, types)
        outs = model(call.pick(call.x, rows), None, call.pick(call.timesteps, rows), call.pick(call.context, rows),
                     call.pick(call.y, rows), guided_hint=guided, control_types=types)
    # one unit: its own scales (weight included); several: the weights went in as hint scales
    scales = lead.scales(hires) if len(members) == 1 else lead.ramp(hires)
    for i, (residual, scale) in enumerate(zip(outs, scales)):
        if scale != 0:
            call.add_residual(i, lead.shaped(residual, scale), rows)


def _fused_hint(members: Sequence[UnionUnit], x: torch.Tensor, rows, types: list[int]) -> torch.Tensor:
    """The set's guided hint (see the module docstring), cached on the first member: it sees no timestep."""
    lead = members[0]
    model = lead.model
    scales = tuple(m.hint_scale for m in members)
    n_rows = x.shape[0] if rows is None else len(rows)
    key = ("fused", tuple(id(m) for m in members), scales, tuple(x.shape[-2:]), rows, model.device, model.dtype)
    fused = lead._cache.get(key)
    if fused is None:
        conditions = [m.guided_hint(x, rows) for m in members]  # each unit's encoded hint, cached by the unit
        fused = lead._cache[key] = model.fuse(conditions, types, scales, rows=n_rows)
    return fused
