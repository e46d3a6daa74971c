"""The UNet hook: applies every unit's effects to any ldm-layout UNet through module hooks.

Layout expected (ldm SD1.x/2.x and sgm SDXL UNets alike): `input_blocks`, `middle_block`,
`output_blocks`, `time_embed`, optional `label_emb`, called as `unet(x, timesteps, context, y=None)`.

Why module hooks and not a replaced `forward`: the UNet's own forward keeps running, so other
extensions that wrap or hook it still see every call, and removal is handle.remove() — nothing of ours
is left on the module. Per UNet call:

1. forward pre-hook on the UNet: ask the host which rows are cond/uncond and how far sampling is, build a
   `UNetCall`, let every active unit edit the context and then contribute (see `effect.Effect`);
2. forward hook on each `input_blocks[b]`: add the encoder-stream features for block b (T2I-Adapter);
3. forward hook on `middle_block`: add the middle features, then the last residual;
4. forward pre-hook on `output_blocks[j]`: its input is cat(h, skip); residual i goes onto the skip from
   input block i, which output block (n−1−i) consumes;
5. forward hook on the UNet (always called, also when the forward raises): apply the output corrections
   and drop this call's state.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import IncompatibleModelError
from ..memory import Placement
from .call import MIDDLE, CallInfo, CallInfoSource, UNetCall, align_to
from .effect import Effect, HookTarget, ModuleHooks
from .host import HostInfo

__all__ = ["CallInfo", "ControlHook"]

COMPUTE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _unet_inputs(args: tuple, kwargs: dict):
    names = ("x", "timesteps", "context", "y")
    return [args[i] if i < len(args) else kwargs.get(name) for i, name in enumerate(names)]


def _with_input(args: tuple, kwargs: dict, position: int, name: str, value: torch.Tensor):
    if len(args) > position:
        return (*args[:position], value, *args[position + 1:]), kwargs
    return args, {**kwargs, name: value}


class ControlHook:
    def __init__(self, unet: nn.Module, units: Sequence[Effect], call_info: CallInfoSource | None = None,
                 *, family: str | None = None, device: torch.device | None = None, dtype: torch.dtype | None = None,
                 host: HostInfo | None = None):
        """`device`/`dtype`: where and in what precision the control models run; by default the UNet's."""
        for name in ("input_blocks", "middle_block", "output_blocks", "time_embed"):
            if not hasattr(unet, name):
                raise IncompatibleModelError(f"the host UNet has no '{name}': not an ldm-layout UNet")
        self.unet = unet
        self.units = list(units)
        self.call_info = call_info or (lambda x, t, c, y: CallInfo())
        self.host = host
        self.num_outputs = len(unet.input_blocks) + 1
        target = HookTarget(unet, self.num_outputs, family)
        for unit in self.units:
            unit.check(target)
        first = next(unet.parameters())
        if dtype is None:
            # fp8-stored UNets (A1111's fp8 option) compute in fp16; never cast a ControlNet to a storage dtype
            dtype = first.dtype if first.dtype in COMPUTE_DTYPES else torch.float16
        self.placement = Placement(device or first.device, dtype)
        self._handles: list = []
        self._stack: list[UNetCall] = []
        self._suspended = 0
        self.shared: dict[str, object] = {}  # per-hook state effects share (ModuleHooks.shared)

    @property
    def runs(self) -> int:
        """Control-model forwards run so far (through the placement), for diagnostics and tests."""
        return self.placement.runs

    # --- lifecycle -------------------------------------------------------------------------------------
    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def own(self, handle) -> None:
        """Keep a hook handle (ours or an effect's) to remove it with the hook."""
        self._handles.append(handle)

    def attach(self) -> ControlHook:
        if self.attached:
            return self
        unet = self.unet
        try:
            for unit in self.units:
                for model in unit.models():
                    self.placement.prepare(model, low_vram=unit.low_vram)
            self.own(unet.register_forward_pre_hook(self._before_unet, with_kwargs=True))
            self.own(unet.register_forward_hook(self._after_unet, always_call=True))
            for b, block in enumerate(unet.input_blocks):
                self.own(block.register_forward_hook(self._feature_adder(b)))
            self.own(unet.middle_block.register_forward_hook(self._after_middle))
            n_in = len(unet.input_blocks)
            for j, block in enumerate(unet.output_blocks):
                self.own(block.register_forward_pre_hook(self._skip_adder(n_in - 1 - j)))
            hooks = ModuleHooks(self)
            for unit in self.units:
                unit.attach(hooks)
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
        self.shared.clear()
        for unit in self.units:
            unit.release()
        self.placement.release()

    @contextmanager
    def applied(self):
        """`with hook.applied(): sample(...)` — removed on exit, whatever happened inside."""
        self.attach()
        try:
            yield self
        finally:
            self.remove()

    @property
    def current(self) -> UNetCall | None:
        return self._stack[-1] if self._stack else None

    @contextmanager
    def suspended(self):
        """UNet calls made inside (an effect's own extra pass) get no residuals, features or corrections,
        and do not consume the host's row ledger; effects' own module hooks still see them."""
        self._suspended += 1
        try:
            yield
        finally:
            self._suspended -= 1

    # --- per call --------------------------------------------------------------------------------------
    def _before_unet(self, module, args, kwargs):
        # Pushed first: the always-called forward hook pops exactly one entry, even if a unit raises below.
        self._stack.append(UNetCall.empty(self.num_outputs))
        if self._suspended:
            return None
        x, timesteps, context, y = _unet_inputs(args, kwargs)
        info = self.call_info(x, timesteps, context, y)
        replaced = info.context is not None
        if replaced:
            context = info.context
        call = UNetCall(x, timesteps, context, y, info, num_outputs=self.num_outputs, placement=self.placement,
                        host=self.host)
        self._stack[-1] = call
        active = [unit for unit in self.units if unit.active(info)]
        for unit in active:
            unit.edit_context(call)
        groups: dict[object, list[Effect]] = {}
        for unit in active:
            key = unit.group_key()
            if key is None:
                unit.contribute(call)
            else:
                groups.setdefault(key, []).append(unit)
        for members in groups.values():
            type(members[0]).contribute_group(members, call)
        if not (replaced or call.context_edited or call.y_edited):
            return None
        if replaced or call.context_edited:
            args, kwargs = _with_input(args, kwargs, 2, "context", call.context)
        if call.y_edited:
            args, kwargs = _with_input(args, kwargs, 3, "y", call.y)
        return args, kwargs

    def _after_unet(self, module, args, output):
        call = self._stack.pop() if self._stack else None
        if call is None or output is None or not call.corrections:
            return None
        for correct in call.corrections:
            output = correct(output, call)
        return output

    def _feature_adder(self, block: int):
        def add_feature(module, args, output):
            call = self.current
            feature = None if call is None else call.features.get(block)
            return None if feature is None else output + align_to(output, feature)

        return add_feature

    def _after_middle(self, module, args, output):
        call = self.current
        if call is None:
            return None
        feature, residual = call.features.get(MIDDLE), call.residuals[-1]
        if feature is None and residual is None:
            return None
        if feature is not None:
            output = output + align_to(output, feature)
        if residual is not None:
            output = output + align_to(output, residual)
        return output

    def _skip_adder(self, index: int):
        def add_to_skip(module, args):
            call = self.current
            residual = None if call is None else call.residuals[index]
            if residual is None:
                return None
            h = args[0]
            channels = residual.shape[1]
            skip = h[:, -channels:] + align_to(h, residual)
            return (torch.cat([h[:, :-channels], skip], dim=1), *args[1:])

        return add_to_skip
