"""The UNet hook: adds control residuals to any ldm-layout UNet through module hooks.

Layout expected (ldm SD1.x/2.x and sgm SDXL UNets alike): `input_blocks`, `middle_block`,
`output_blocks`, `time_embed`, optional `label_emb`, called as `unet(x, timesteps, context, y=None)`.

Why module hooks and not a replaced `forward`: the UNet's own forward keeps running, so other
extensions that wrap or hook it still see every call, and removal is handle.remove() — nothing of ours
is left on the module. Per UNet call:

1. forward pre-hook on the UNet: ask the host which rows are cond/uncond and how far sampling is, run
   every active unit's ControlNet (on the cond rows only where the uncond rows would get nothing), scale,
   mask, pool, and sum the residuals;
2. forward hook on `middle_block`: add the last residual to its output;
3. forward pre-hook on `output_blocks[j]`: its input is cat(h, skip); residual i goes onto the skip from
   input block i, which output block (n−1−i) consumes;
4. forward hook on the UNet (always called, also when the forward raises): drop this call's residuals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import IncompatibleModelError
from ..kinds.controlnet_unit import BoundUnit
from ..memory import Placement


@dataclass(frozen=True)
class CallInfo:
    """What the host knows about one UNet call.

    cond_rows: batch rows that carry the positive prompt; None when unknown (then every row is treated
        as cond, as the reference does for unmarked calls).
    fraction: sampling progress of this pass in [0, 1] (the reference: sampling_step / sampling_steps).
    hires: whether this is the hires-fix pass.
    context: a replacement text context for the UNet, for hosts that mark rows inside it.
    """

    cond_rows: tuple[int, ...] | None = None
    fraction: float = 0.0
    hires: bool = False
    context: torch.Tensor | None = None


CallInfoSource = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None], CallInfo]


def _unet_inputs(args: tuple, kwargs: dict):
    names = ("x", "timesteps", "context", "y")
    values = [args[i] if i < len(args) else kwargs.get(name) for i, name in enumerate(names)]
    return values


class Residuals:
    """Per-call sum of every unit's residuals, full-batch, indexed like the ControlNet's outputs."""

    def __init__(self, count: int, batch: int):
        self.items: list[torch.Tensor | None] = [None] * count
        self.batch = batch

    def add(self, index: int, value: torch.Tensor, rows: tuple[int, ...] | None) -> None:
        if rows is not None:
            full = value.new_zeros((self.batch, *value.shape[1:]))
            full[list(rows)] = value
            value = full
        current = self.items[index]
        self.items[index] = value if current is None else current + value


def _add_residual(base: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """base + residual, aligning spatial size (odd resolutions) with nearest as the reference does."""
    if residual.shape[-2:] != base.shape[-2:] and residual.shape[-2:] != (1, 1):
        residual = F.interpolate(residual, size=base.shape[-2:], mode="nearest")
    return base + residual.to(base.dtype)


COMPUTE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class ControlHook:
    def __init__(self, unet: nn.Module, units: Sequence[BoundUnit], call_info: CallInfoSource | None = None,
                 *, family: str | None = None, device: torch.device | None = None, dtype: torch.dtype | None = None):
        """`device`/`dtype`: where and in what precision the control models run; by default the UNet's."""
        for name in ("input_blocks", "middle_block", "output_blocks", "time_embed"):
            if not hasattr(unet, name):
                raise IncompatibleModelError(f"the host UNet has no '{name}': not an ldm-layout UNet")
        self.unet = unet
        self.units = list(units)
        self.call_info = call_info or (lambda x, t, c, y: CallInfo())
        self.num_outputs = len(unet.input_blocks) + 1
        for unit in self.units:
            self._check_compatible(unit, family)
        first = next(unet.parameters())
        if dtype is None:
            # fp8-stored UNets (A1111's fp8 option) compute in fp16; never cast a ControlNet to a storage dtype
            dtype = first.dtype if first.dtype in COMPUTE_DTYPES else torch.float16
        self.placement = Placement(device or first.device, dtype)
        self._handles: list = []
        self._stack: list[Residuals] = []
        self.runs = 0  # ControlNet forwards executed (for diagnostics)

    def _check_compatible(self, unit: BoundUnit, family: str | None) -> None:
        model = unit.model
        if family is not None and model.family != family:
            raise IncompatibleModelError(
                f"{model.path.name} is a {model.family} ControlNet but the checkpoint is {family}",
                unit=unit.index, field="model",
            )
        if model.num_outputs != self.num_outputs:
            raise IncompatibleModelError(
                f"{model.path.name} produces {model.num_outputs} residuals but this UNet takes {self.num_outputs} "
                f"({model.family} ControlNet on a different architecture?)",
                unit=unit.index, field="model",
            )

    # --- lifecycle -------------------------------------------------------------------------------------
    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self) -> ControlHook:
        if self.attached:
            return self
        for unit in self.units:
            self.placement.prepare(unit.model, low_vram=unit.low_vram)
        unet = self.unet
        try:
            self._handles.append(unet.register_forward_pre_hook(self._before_unet, with_kwargs=True))
            self._handles.append(unet.register_forward_hook(self._after_unet, always_call=True))
            self._handles.append(unet.middle_block.register_forward_hook(self._after_middle))
            n_in = len(unet.input_blocks)
            for j, block in enumerate(unet.output_blocks):
                self._handles.append(block.register_forward_pre_hook(self._skip_adder(n_in - 1 - j)))
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        """Undo everything attach() did; safe to call twice and after errors."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._stack.clear()
        for unit in self.units:
            unit.clear_cache()
        self.placement.release()

    @contextmanager
    def applied(self):
        """`with hook.applied(): sample(...)` — removed on exit, whatever happened inside."""
        self.attach()
        try:
            yield self
        finally:
            self.remove()

    # --- per call --------------------------------------------------------------------------------------
    def _before_unet(self, module, args, kwargs):
        x, timesteps, context, y = _unet_inputs(args, kwargs)
        info = self.call_info(x, timesteps, context, y)
        if info.context is not None:
            context = info.context
            if len(args) > 2:
                args = (*args[:2], context, *args[3:])
            else:
                kwargs = {**kwargs, "context": context}
        total = Residuals(self.num_outputs, x.shape[0])
        for unit in self.units:
            if unit.active(info.fraction, info.hires):
                self._run_unit(unit, x, timesteps, context, y, info, total)
        self._stack.append(total)
        return (args, kwargs) if info.context is not None else None

    def _run_unit(self, unit: BoundUnit, x, timesteps, context, y, info: CallInfo, total: Residuals) -> None:
        rows = info.cond_rows if unit.cond_only else None
        if rows is not None and len(rows) == x.shape[0]:
            rows = None
        if rows is not None and not rows:
            return  # an uncond-only call: nothing for this unit to add

        def pick(t):
            return t if t is None or rows is None else t[list(rows)]

        with self.placement.running(unit.model, low_vram=unit.low_vram) as model:
            guided = unit.guided_hint(x, rows)
            outs = model(pick(x), None, pick(timesteps), pick(context), pick(y), guided_hint=guided)
        self.runs += 1
        for i, (residual, scale) in enumerate(zip(outs, unit.scales(info.hires))):
            if scale == 0:
                continue
            residual = residual * scale
            mask = unit.region_mask(residual)
            if mask is not None:
                residual = residual * mask
            if unit.global_average_pooling:
                residual = residual.mean(dim=(2, 3), keepdim=True)
            total.add(i, residual, rows)

    def _after_unet(self, module, args, output):
        if self._stack:
            self._stack.pop()

    def _current(self, index: int) -> torch.Tensor | None:
        return self._stack[-1].items[index] if self._stack else None

    def _after_middle(self, module, args, output):
        residual = self._current(self.num_outputs - 1)
        return None if residual is None else _add_residual(output, residual)

    def _skip_adder(self, index: int):
        def add_to_skip(module, args):
            residual = self._current(index)
            if residual is None:
                return None
            h = args[0]
            channels = residual.shape[1]
            skip = _add_residual(h[:, -channels:], residual)
            return (torch.cat([h[:, :-channels], skip], dim=1), *args[1:])

        return add_to_skip
