"""LRU cache of loaded control models.

- A hit refreshes the entry (the reference evicts first-in-first-out even for models in use).
- A file changed on disk (size or mtime) is reloaded.
- Models built from the host UNet's weights ("difference" ControlNets, Control-LoRAs: `depends_on_base` true) are
  reloaded when the caller's `base_id` changes, and `drop_other_bases` lets the host drop them as soon as it
  loads another checkpoint (a Control-LoRA keeps the old UNet's parameters alive). Entries need only
  `.to(device)` and, optionally, `depends_on_base`.
- Eviction drops the cache's reference, moves the weights off the accelerator and collects, so the
  memory really comes back (as long as nobody else holds the model).
"""

from __future__ import annotations

import gc
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from ..kinds.controlnet import ControlModel
from .loading import load_control_model

DEFAULT_CAPACITY = 2  # the reference's control_net_model_cache_size default


def file_signature(path: Path) -> tuple[int, int]:
    """(size, mtime_ns) of a model file, or of a diffusers folder's weight/config files together."""
    if path.is_dir():
        stats = [p.stat() for p in sorted(path.iterdir()) if p.is_file()]
        return sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)
    st = path.stat()
    return st.st_size, st.st_mtime_ns


@dataclass
class _Entry:
    model: ControlModel
    signature: tuple[int, int]
    base_id: object


class ModelCache:
    def __init__(self, capacity: int = DEFAULT_CAPACITY, loader: Callable[..., ControlModel] = load_control_model):
        self.capacity = max(1, int(capacity))
        self._loader = loader
        self._entries: OrderedDict[Path, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, path: str | os.PathLike) -> bool:
        return Path(path).resolve() in self._entries

    def get(
        self,
        path: str | os.PathLike,
        *,
        base_unet: Mapping[str, torch.Tensor] | None = None,
        base_id: object = None,
    ) -> ControlModel:
        key = Path(path).resolve()
        signature = file_signature(key) if key.exists() else None
        entry = self._entries.get(key)
        if entry is not None and entry.signature == signature and (
            not getattr(entry.model, "depends_on_base", False) or entry.base_id == base_id
        ):
            self._entries.move_to_end(key)
            return entry.model
        if entry is not None:
            self._drop(key)
        model = self._loader(key, base_unet=base_unet)
        self._entries[key] = _Entry(model, signature, base_id)
        while len(self._entries) > self.capacity:
            self._drop(next(iter(self._entries)))
        return model

    def set_capacity(self, capacity: int) -> None:
        self.capacity = max(1, int(capacity))
        while len(self._entries) > self.capacity:
            self._drop(next(iter(self._entries)))

    def drop_other_bases(self, base_id: object) -> int:
        """Drop the models built on another host checkpoint than `base_id`: their next use would rebuild them
        anyway, and until then they hold that checkpoint's UNet weights. Returns how many were dropped."""
        stale = [key for key, entry in self._entries.items()
                 if getattr(entry.model, "depends_on_base", False) and entry.base_id != base_id]
        for key in stale:
            self._drop(key)
        return len(stale)

    def clear(self) -> None:
        for key in list(self._entries):
            self._drop(key)

    def _drop(self, key: Path) -> None:
        entry = self._entries.pop(key)
        entry.model.to("cpu")
        del entry
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
