"""The protocol between the hook and what a bound unit does to the UNet: `Effect`.

Every kind of unit (ControlNet, T2I-Adapter, Control-LoRA, Union, IP-Adapter, reference-only, post-UNet
corrections...) is an `Effect`. Per UNet call the hook asks every effect `active(info)`, then, for the
active ones, in unit order:

1. `edit_context(call)`  — change the UNet's inputs (append context tokens, replace the context or `y`);
                           runs for all units before step 2, so every ControlNet sees the final inputs,
                           as in the reference;
2. `contribute(call)`    — add residuals, encoder features or output corrections to the `UNetCall`.
                           Effects with the same non-None `group_key()` are handed over together to
                           `contribute_group` (one batched forward for several units of one model).

Effects that need hooks of their own (attention patches) register them in `attach(hooks)` through the
`ModuleHooks` they are given: the hook owns those handles and removes them exactly, on error too.
`release()` runs when the hook is removed (drop per-generation caches).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import nn

from .call import CallInfo, UNetCall
from .host import HostInfo

if TYPE_CHECKING:
    from .control_hook import ControlHook


@dataclass(frozen=True)
class HookTarget:
    """What an effect may check at hook construction: the host UNet and its family."""

    unet: nn.Module
    num_outputs: int  # skip connections + the middle block (13 for SD1.x/2.x, 10 for SDXL)
    family: str | None


class ModuleHooks:
    """Given to `Effect.attach`: module hooks registered here are removed by the ControlHook."""

    def __init__(self, hook: ControlHook):
        self._hook = hook

    @property
    def unet(self) -> nn.Module:
        return self._hook.unet

    @property
    def host(self) -> HostInfo | None:
        """What the host said about its model (schedule, prediction type, VAE), if anything."""
        return self._hook.host

    @property
    def current(self) -> UNetCall | None:
        """The UNet call in progress (None outside any call)."""
        return self._hook.current

    def suspended(self):
        """`with hooks.suspended(): unet(...)` — an extra UNet pass of the effect's own, see ControlHook."""
        return self._hook.suspended()

    def forward_pre(self, module: nn.Module, fn: Callable, *, with_kwargs: bool = False) -> None:
        self._hook.own(module.register_forward_pre_hook(fn, with_kwargs=with_kwargs))

    def forward(self, module: nn.Module, fn: Callable, *, with_kwargs: bool = False, always_call: bool = False) -> None:
        """Runs before the hook's own forward hooks on the same module (prepended): the reference applies its
        patches inside the blocks, before features and residuals are added to their outputs."""
        self._hook.own(module.register_forward_hook(fn, with_kwargs=with_kwargs, always_call=always_call,
                                                    prepend=True))

    def shared(self, key: str, factory: Callable[[], Any]) -> Any:
        """One object per hook for all effects that ask with `key` (e.g. the reference units' attention banks,
        whose module hooks must be registered once); dropped when the hook is removed."""
        store = self._hook.shared
        if key not in store:
            store[key] = factory()
        return store[key]


class Effect:
    """Base class: every method is optional; the defaults do nothing."""

    index: int = 0  # the unit's position, for error messages
    low_vram: bool = False

    def check(self, target: HookTarget) -> None:
        """Raise IncompatibleModelError (naming unit and field) if this unit cannot run on `target`."""

    def models(self) -> Sequence[Any]:
        """Models the hook's placement moves to the compute device (objects with `.to(device, dtype)`)."""
        return ()

    def active(self, info: CallInfo) -> bool:
        return True

    def group_key(self) -> Hashable | None:
        return None

    def edit_context(self, call: UNetCall) -> None:
        pass

    def contribute(self, call: UNetCall) -> None:
        pass

    @classmethod
    def contribute_group(cls, effects: Sequence[Effect], call: UNetCall) -> None:
        for effect in effects:
            effect.contribute(call)

    def attach(self, hooks: ModuleHooks) -> None:
        pass

    def release(self) -> None:
        pass
