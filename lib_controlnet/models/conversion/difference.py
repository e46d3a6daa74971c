""""Difference" ControlNets: files that store W_control − W_base_unet (marked by a `difference` key).

The original `tool_transfer_control.py` moved a ControlNet onto another checkpoint by adding that
checkpoint's UNet weights to the difference; loading such a file on the host's UNet does the same:
W = W_difference + W_host_unet for every key the UNet also has (the encoder), others taken as stored.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ...errors import IncompatibleModelError

DIFFERENCE_MARKER = "difference"


def merge_difference(
    state_dict: dict[str, torch.Tensor], base_unet: Mapping[str, torch.Tensor] | None, *, name: str
) -> dict[str, torch.Tensor]:
    if base_unet is None:
        raise IncompatibleModelError(
            f"{name} is a 'difference' ControlNet: it can only be loaded onto a host UNet (pass base_unet)"
        )
    merged, matched = {}, 0
    for key, value in state_dict.items():
        if key == DIFFERENCE_MARKER:
            continue
        base = base_unet.get(key)
        if base is not None:
            if base.shape != value.shape:
                raise IncompatibleModelError(
                    f"{name}: '{key}' is {tuple(value.shape)} but the host UNet's is {tuple(base.shape)}"
                )
            value = value + base.detach().to(device=value.device, dtype=value.dtype)
            matched += 1
        merged[key] = value
    if matched == 0:
        raise IncompatibleModelError(f"{name}: no key of this difference ControlNet exists in the host UNet")
    return merged
