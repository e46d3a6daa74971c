"""Stability's Control-LoRA files (`control-lora-*-rank128/256`, marked by a `lora_controlnet` key).

A Control-LoRA is a ControlNet whose encoder weights are the host UNet's plus a low-rank update:
`W = W_unet + up @ down` (reshaped to W's shape). The file holds, in the original ldm names:

- `X.up` [out, rank(, 1, 1)] and `X.down` [rank, in(, kh, kw)] for every LoRA'd Linear/Conv2d `X`;
- full tensors for the rest: the hint encoder, zero convs, middle_block_out, biases and norms.

`control_lora_shapes` gives the shapes of the ControlNet the file describes (what detection reads);
`split_control_lora` separates the low-rank pairs from the tensors used as they are.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

CONTROL_LORA_MARKER = "lora_controlnet"


def lora_weight_shape(up: tuple[int, ...], down: tuple[int, ...]) -> tuple[int, ...]:
    """The weight an up/down pair updates: Linear (out, in) or Conv2d (out, in, kh, kw)."""
    return (up[0], *down[1:])


def control_lora_shapes(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    out = {}
    for key, shape in shapes.items():
        if key == CONTROL_LORA_MARKER or key.endswith(".down"):
            continue
        if key.endswith(".up"):
            module = key[: -len(".up")]
            down = shapes.get(module + ".down")
            if down is None:
                raise KeyError(f"{key} has no matching {module}.down")
            out[module + ".weight"] = lora_weight_shape(shape, down)
        else:
            out[key] = shape
    return out


def split_control_lora(
    state: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """(tensors used as they are, {network weight key: (up, down)})."""
    own, pairs = {}, {}
    for key, value in state.items():
        if key == CONTROL_LORA_MARKER or key.endswith(".down"):
            continue
        if key.endswith(".up"):
            module = key[: -len(".up")]
            pairs[module + ".weight"] = (value, state[module + ".down"])
        else:
            own[key] = value
    return own, pairs
