"""A small LRU cache of preprocessor results, keyed by the input image's bytes, the module and its params.

Re-running a generation with the same control image and settings is the common case (a seed sweep, a
prompt tweak), and some maps cost far more than a hash. Bounded by entry count and by bytes held.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .declaration import Detection, Params

# The reference's default (--controlnet-preprocessor-cache-size).
DEFAULT_ENTRIES = 16
DEFAULT_MAX_BYTES = 512 * 2**20


@dataclass
class _Entry:
    image: np.ndarray  # a private copy, compared on every hit so a hash collision can never return a wrong map
    detection: Detection
    size: int


def _copy(value):
    return value.copy() if isinstance(value, np.ndarray) else copy.deepcopy(value)  # data: tensors, dicts


def _nbytes(value) -> int:
    return int(getattr(value, "nbytes", 0))


def _copy_detection(detection: Detection) -> Detection:
    copied_map = _copy(detection.map)
    display = copied_map if detection.display is detection.map else _copy(detection.display)
    return Detection(map=copied_map, display=display, pose=copy.deepcopy(detection.pose))


class ResultCache:
    def __init__(self, max_entries: int = DEFAULT_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_entries = max(0, int(max_entries))
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(module: str, image: np.ndarray, params: Params) -> tuple:
        # hash() of bytes is SipHash with a per-process random key: fast, and not steerable by a client.
        return module, image.shape, image.dtype.str, hash(image.tobytes()), params

    def get(self, key: tuple, image: np.ndarray) -> Detection | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or not np.array_equal(entry.image, image):
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
        return _copy_detection(entry.detection)

    def put(self, key: tuple, image: np.ndarray, detection: Detection) -> None:
        if self.max_entries == 0:
            return
        stored = _copy_detection(detection)
        size = image.nbytes + _nbytes(stored.map) + (0 if stored.display is stored.map else _nbytes(stored.display))
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.size
            self._entries[key] = _Entry(image.copy(), stored, size)
            self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.size

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes_held(self) -> int:
        return self._bytes
