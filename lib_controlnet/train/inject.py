"""Adding a ControlNet's residuals to a base UNet's forward while training, gradients included.

Where they go is the original ControlledUnetModel's rule (cldm.py): residual i (one per input block, then
the middle block's) is added to the skip connection that output block n-1-i takes from input block i, and the
last one to the middle block's output; the encoder path itself is not changed. As in the core's hook this is
done with module hooks around an unmodified ldm UNet, so the UNet stays frozen and untouched: its encoder runs
without building a graph (no parameter of it needs a gradient), its decoder passes gradients back to the
residuals. The inference hook (`lib_controlnet.hook`) is not used here because it runs ControlNets without
gradients and applies unit weights, modes and masks that training does not have.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def residuals_added(unet: nn.Module, residuals: Sequence[torch.Tensor]):
    """Within the block, `unet(x, t, context)` adds `residuals` (len(input_blocks) + 1 of them)."""
    outputs = unet.output_blocks
    if len(residuals) != len(outputs) + 1:
        raise ValueError(f"the UNet takes {len(outputs) + 1} residuals, got {len(residuals)}")

    def add_middle(_module, _args, out):
        return out + residuals[-1]

    def add_skip(residual):
        def hook(_module, args):
            h, channels = args[0], residual.shape[1]
            return (torch.cat([h[:, :-channels], h[:, -channels:] + residual], dim=1), *args[1:])

        return hook

    handles = [unet.middle_block.register_forward_hook(add_middle)]
    try:
        for j, block in enumerate(outputs):
            handles.append(block.register_forward_pre_hook(add_skip(residuals[len(outputs) - 1 - j])))
        yield
    finally:
        for handle in handles:
            handle.remove()
