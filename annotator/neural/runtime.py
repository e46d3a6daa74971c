"""Loaded annotator networks: lazily, cached by the control-model cache's policy, on the device only while
they run.

- Loading happens on first use (`AnnotatorModels.get`), through `lib_controlnet.models.cache.ModelCache`:
  LRU, a file changed on disk is reloaded, an evicted network is moved off the accelerator and collected.
- Networks live on the CPU. `running(...)` moves them to the compute device (the UNet's, set by the host
  with `configure(device=...)`) for one call and back afterwards, with `lib_controlnet.memory.Placement`
  in its low-VRAM mode, so nothing of ours stays on the accelerator between calls.
- One lock serialises the neural annotators: a network is never moved while another thread runs it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lib_controlnet.lazy import lazy_singleton
from lib_controlnet.memory import Placement
from lib_controlnet.models.cache import DEFAULT_CAPACITY, ModelCache

from .weights import NetSpec

# One call can hold several networks: openpose_full three (body, hand, face), ip-adapter_pulid five (antelopev2's
# detector and recogniser, RetinaFace, BiSeNet, EVA-CLIP); a smaller cache would reload some on every call.
MIN_CAPACITY = 5
COMPUTE_DTYPE = torch.float32  # the reference runs its annotators in float32 too


def image_tensor(img: np.ndarray, device: torch.device) -> torch.Tensor:
    """HxWxC image -> 1xCxHxW float32 on `device` (copied: the caller's array may be read-only)."""
    return torch.tensor(np.ascontiguousarray(img), device=device).permute(2, 0, 1)[None].float()


def _default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


class AnnotatorModels:
    def __init__(self, capacity: int = DEFAULT_CAPACITY, device: torch.device | str | None = None,
                 folder: Path | str | None = None):
        self.folder = None if folder is None else Path(folder)  # None: weights.weights_folder()
        self._cache = ModelCache(max(MIN_CAPACITY, int(capacity)), loader=self._load)
        self._pending: dict[Path, tuple[NetSpec, Path]] = {}
        self.lock = threading.RLock()
        self.device = torch.device(device) if device is not None else _default_device()
        self.loads = 0  # how many files were read (tests and benchmarks look at it)

    def set_capacity(self, capacity: int) -> None:
        with self.lock:
            self._cache.set_capacity(max(MIN_CAPACITY, int(capacity)))

    def _load(self, key: Path, base_unet=None) -> nn.Module:
        spec, found = self._pending[key]
        self.loads += 1
        return spec.load(found)

    def get(self, spec: NetSpec, folder: Path | None = None) -> nn.Module:
        """The network for `spec`, loaded from its weight file on first use (NotFoundError if absent)."""
        found = spec.weight.find(folder if folder is not None else self.folder)
        with self.lock:
            key = found.resolve()
            self._pending[key] = (spec, found)
            try:
                return self._cache.get(found)
            finally:
                self._pending.pop(key, None)

    def __len__(self) -> int:
        return len(self._cache)

    def clear(self) -> None:
        with self.lock:
            self._cache.clear()

    @contextmanager
    def running(self, *nets: nn.Module) -> Iterator[torch.device]:
        """Hold the lock, put `nets` on the compute device, yield the device; afterwards they are back on the
        CPU (also on error)."""
        with self.lock, torch.inference_mode(), ExitStack() as stack:
            placement = Placement(self.device, COMPUTE_DTYPE)
            for net in nets:
                stack.enter_context(placement.running(net, low_vram=True))
            yield self.device


@lazy_singleton
def default_models() -> AnnotatorModels:
    return AnnotatorModels()


def configure(*, device: torch.device | str | None = None, capacity: int | None = None) -> AnnotatorModels:
    """For the host: the device annotators compute on (the UNet's) and the cache size (the
    `control_net_model_cache_size` setting; at least MIN_CAPACITY is kept)."""
    models = default_models()
    with models.lock:
        if device is not None:
            models.device = torch.device(device)
        if capacity is not None:
            models.set_capacity(capacity)
    return models
