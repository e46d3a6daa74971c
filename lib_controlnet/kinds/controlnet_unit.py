"""A plain ControlNet (or any kind with the same outputs) as a unit: residuals onto the skips and middle."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import IncompatibleModelError
from ..hook.call import UNetCall
from ..hook.effect import HookTarget
from .hinted_unit import HintedUnit


@dataclass(eq=False)
class BoundUnit(HintedUnit):
    """`model(x, hint, timesteps, context, y, guided_hint=...)` -> residuals, one per skip + the middle.

    `batch_same_model`: units of one model file that work on the same rows in a call run as one forward
    over the rows stacked k times, each unit then scaling its own slice. Off by default: on the CPU it
    costs what k forwards cost (bench/bench_union.py measures it), it can pay off on a GPU with small batches.
    """

    batch_same_model: bool = False
    # InstantID: the ControlNet sees these tokens (per call, cond/uncond rows) instead of the text context
    context_override: Callable[[UNetCall], torch.Tensor] | None = None

    def group_key(self):
        return ("controlnet", id(self.model)) if self.batch_same_model and self.context_override is None else None

    @classmethod
    def contribute_group(cls, effects, call: UNetCall) -> None:
        sets: dict[bool, list[BoundUnit]] = {}
        for unit in effects:
            sets.setdefault(unit.cond_only, []).append(unit)
        for members in sets.values():
            if len(members) == 1:
                members[0].contribute(call)
            else:
                _batched(members, call)

    def check(self, target: HookTarget) -> None:
        super().check(target)
        model = self.model
        if model.num_outputs != target.num_outputs:
            raise IncompatibleModelError(
                f"{model.path.name} produces {model.num_outputs} residuals but this UNet takes {target.num_outputs} "
                f"({model.family} ControlNet on a different architecture?)",
                unit=self.index, field="model",
            )

    def contribute(self, call: UNetCall) -> None:
        rows = call.rows(self.cond_only)
        if rows is not None and not rows:
            return  # an uncond-only call: nothing for this unit to add
        with call.placement.running(self.model, low_vram=self.low_vram) as model:
            guided = self.guided_hint(call.x, rows)
            context = call.context if self.context_override is None else self.context_override(call)
            outs = model(call.pick(call.x, rows), None, call.pick(call.timesteps, rows), call.pick(context, rows),
                         call.pick(call.y, rows), guided_hint=guided)
        for i, (residual, scale) in enumerate(zip(outs, self.scales(call.info.hires))):
            if scale != 0:
                call.add_residual(i, self.shaped(residual, scale), rows)

    def guided_hint(self, x: torch.Tensor, rows: tuple[int, ...] | None) -> torch.Tensor:
        """The hint encoder's output for this call, computed once per size and row set.

        The hint encoder sees neither the timestep nor the text, so its output is reused across steps.
        """
        size = (x.shape[-2] * 8, x.shape[-1] * 8)
        hint = self.hint_at(size)
        if hint.shape[0] == 1:
            rows = None  # one image broadcasts over every row
        key = ("guided", size, rows, self.model.device, self.model.dtype)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = self.model.encode_hint(self.match_batch(hint, x.shape[0], rows))
        return cached


def _batched(members, call: UNetCall) -> None:
    """One forward for k units of one model: the call's rows stacked k times, unit j's hint on copy j."""
    lead = members[0]
    rows = call.rows(lead.cond_only)
    if rows is not None and not rows:
        return
    n, k = (call.batch if rows is None else len(rows)), len(members)

    def stacked(t):
        t = call.pick(t, rows)
        return None if t is None else t.repeat(k, *([1] * (t.ndim - 1)))

    with call.placement.running(lead.model, low_vram=any(m.low_vram for m in members)) as model:
        guided = torch.cat([m.guided_hint(call.x, rows).expand(n, -1, -1, -1) for m in members])
        outs = model(stacked(call.x), None, stacked(call.timesteps), stacked(call.context), stacked(call.y),
                     guided_hint=guided)
    for j, unit in enumerate(members):
        for i, (residual, scale) in enumerate(zip(outs, unit.scales(call.info.hires))):
            if scale != 0:
                call.add_residual(i, unit.shaped(residual[j * n:(j + 1) * n], scale), rows)
