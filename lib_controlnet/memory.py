"""Where control models live during a generation: the one place that moves them between devices.

Normal mode: a model goes to the UNet's device on its first use and stays there until the generation
ends. Low-VRAM: it lives on the offload device (CPU) and visits the UNet's device only for its own
forward. When the generation ends every model goes back to the offload device; what stays in memory is
then the model cache's business.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import torch


class Movable(Protocol):
    """Any control model: the placement needs nothing but `.to(device, dtype)`."""

    def to(self, device=None, dtype=None): ...




class Placement:
    def __init__(self, device: torch.device, dtype: torch.dtype, offload_device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.dtype = dtype
        self.offload_device = torch.device(offload_device)
        self._used: dict[int, Movable] = {}
        self.runs = 0  # forwards run through `running`

    def prepare(self, model: Movable, *, low_vram: bool) -> None:
        """At attach: take the host's dtype; keep low-VRAM models off the accelerator."""
        model.to(self.offload_device if low_vram else None, self.dtype)

    @contextmanager
    def running(self, model: Movable, *, low_vram: bool) -> Iterator[Movable]:
        self._used[id(model)] = model
        self.runs += 1
        model.to(self.device, self.dtype)
        try:
            yield model
        finally:
            if low_vram:
                model.to(self.offload_device)

    def release(self) -> None:
        """End of generation (also on error): nothing of ours stays on the accelerator."""
        for model in self._used.values():
            model.to(self.offload_device)
        self._used.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
