"""A ControlNet whose encoder weights live in the host UNet: the network of a Control-LoRA.

`bind_base_weights(net, pairs, base)` takes a ControlNet built on the meta device with the file's own
tensors assigned (hint encoder, zero convs, biases, norms; plus each LoRA pair as `lora_up`/`lora_down` of
its module) and makes every remaining parameter a *live view* of the host UNet's:

    W = W_unet + (up.flatten(1) @ down.flatten(1)).reshape(W.shape)      (LoRA'd Linear/Conv2d)
    W = W_unet                                                            (anything else the file lacks)

made just before its module runs and dropped right after (module hooks on our own network), so nothing of
the UNet is copied: memory is the file plus one layer's weight at a time. Measured choice: building each
weight per call costs `rank·in·k²·out` multiply-adds per layer, a small fraction of the layer's own
convolution at any latent size, where adding the low-rank path to the activations (x·downᵀ·upᵀ) costs
`tokens·rank·(in·k² + out)` and grows with the image (bench/bench_control_lora.py).

UNet parameters (`nn.Parameter`s, e.g. from `unet.state_dict(keep_vars=True)`) are held weakly and read at
call time: the network follows the UNet's device moves (low-VRAM offloading) and never keeps a replaced
checkpoint alive; plain tensors are held as given.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ...errors import IncompatibleModelError


@dataclass
class _Slot:
    name: str  # the parameter's name in its module ("weight", "bias")
    base: Callable[[], torch.Tensor | None]
    shape: torch.Size
    lora: bool  # True: + up @ down (the module's lora_up / lora_down)


def _reference(tensor: torch.Tensor) -> Callable[[], torch.Tensor | None]:
    if isinstance(tensor, nn.Parameter):
        return weakref.ref(tensor)
    return lambda: tensor


class BaseWeights:
    """The forward pre-/post-hooks that give one module its UNet-derived parameters for one call."""

    def __init__(self, module: nn.Module, slots: list[_Slot], what: str):
        self.slots = slots
        self.what = what
        module.register_forward_pre_hook(self.fill)
        module.register_forward_hook(self.clear, always_call=True)

    def fill(self, module: nn.Module, args) -> None:
        x = args[0]
        dtype = module.lora_up.dtype if hasattr(module, "lora_up") else x.dtype
        for slot in self.slots:
            base = slot.base()
            if base is None:
                raise IncompatibleModelError(f"{self.what}: the host UNet it was built on is gone (reload the model)")
            w = base.detach().to(x.device, dtype).reshape(slot.shape)
            if slot.lora:
                up, down = module.lora_up, module.lora_down
                w = w + (up.flatten(1) @ down.flatten(1)).reshape(slot.shape)
            module._parameters[slot.name] = w

    def clear(self, module: nn.Module, args, output) -> None:
        for slot in self.slots:
            module._parameters[slot.name] = None


def bind_base_weights(
    net: nn.Module,
    expected: Mapping[str, torch.Size],
    pairs: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    base: Mapping[str, torch.Tensor],
    *,
    what: str,
) -> int:
    """Attach every parameter of `expected` that `net` lacks to the UNet's (`base`); returns how many."""
    modules = dict(net.named_modules())
    own = {k for k, p in net.named_parameters() if not p.is_meta}
    slots: dict[str, list[_Slot]] = {}
    for key, shape in expected.items():
        if key in own:
            continue
        module_name, _, name = key.rpartition(".")
        source = base.get(key)
        if source is None:
            raise IncompatibleModelError(f"{what}: the host UNet has no '{key}' (a Control-LoRA for another model?)")
        if source.numel() != shape.numel():
            raise IncompatibleModelError(
                f"{what}: '{key}' is {tuple(shape)} but the host UNet's is {tuple(source.shape)}")
        module = modules[module_name]
        lora = key in pairs
        if lora:
            up, down = pairs[key]
            module.register_parameter("lora_up", nn.Parameter(up, requires_grad=False))
            module.register_parameter("lora_down", nn.Parameter(down, requires_grad=False))
        module._parameters[name] = None
        slots.setdefault(module_name, []).append(_Slot(name, _reference(source), shape, lora))
    for module_name, module_slots in slots.items():
        BaseWeights(modules[module_name], module_slots, what)
    return sum(len(s) for s in slots.values())
