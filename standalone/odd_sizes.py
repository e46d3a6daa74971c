"""Sizes that are multiples of 8 but not of 64: make the UNet's up path meet its skips.

With a latent side that is not divisible by 8, a stride-2 downsample rounds up (65 -> 33) and the ×2
upsample overshoots (33 -> 66), so ldm's `torch.cat([h, skip])` fails. A1111 patches that cat to resize `h`
to the skip (nearest); here a forward hook on each output block's upsampler does the same, for one
generation, and nothing of it stays on the UNet afterwards.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch.nn.functional as F
from torch import nn


@contextmanager
def odd_size_support(unet: nn.Module):
    sizes: dict[int, tuple[int, int]] = {}
    handles = []
    n_in = len(unet.input_blocks)

    def recorder(index: int):
        def record(module, args, output):
            sizes[index] = tuple(output.shape[-2:])

        return record

    def resizer(skip_index: int):
        def resize(module, args, output):
            target = sizes.get(skip_index)
            if target is not None and tuple(output.shape[-2:]) != target:
                return F.interpolate(output, size=target, mode="nearest")
            return None

        return resize

    try:
        for i, block in enumerate(unet.input_blocks):
            handles.append(block.register_forward_hook(recorder(i)))
        for j, block in enumerate(unet.output_blocks):
            last = block[-1]
            if type(last).__name__ == "Upsample":
                # output block j+1 concatenates the skip of input block n_in - 2 - j
                handles.append(last.register_forward_hook(resizer(n_in - 2 - j)))
        yield
    finally:
        for handle in handles:
            handle.remove()
