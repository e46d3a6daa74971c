"""What a model file is, from its safetensors header alone: a few kilobytes, never the weights.

For listings (the panel's family filter, `/controlnet/control_types`' union models) that must not load every
file. Pickle files have no header to read without unpickling: they get None. Results are cached per (path,
size, mtime).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from ..errors import ControlNetError
from .detection import detect

_MAX_HEADER = 100 * 2**20  # the safetensors format's own limit
_DIFFUSERS_SAFETENSORS = "diffusion_pytorch_model.safetensors"


def read_safetensors_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """{tensor name: shape} from a safetensors file's header, without reading any tensor data.

    Raises ValueError when the file is not a well-formed safetensors file.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        length = int.from_bytes(f.read(8), "little")
        if not 0 < length <= min(_MAX_HEADER, size - 8):
            raise ValueError(f"{Path(path).name}: bad safetensors header length")
        header = json.loads(f.read(length))
    if not isinstance(header, dict):
        raise ValueError(f"{Path(path).name}: the safetensors header is not an object")
    shapes = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        shape = info.get("shape") if isinstance(info, dict) else None
        if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
            raise ValueError(f"{Path(path).name}: tensor {name!r} has no shape")
        shapes[name] = tuple(shape)
    return shapes


def detect_header(path: Path) -> tuple[str, str] | None:
    """(family, kind) that detection finds in a safetensors file's header (a diffusers folder's weights, with its
    config); None when it cannot tell."""
    config = None
    weights = path
    if path.is_dir():
        weights = path / _DIFFUSERS_SAFETENSORS
        try:
            config = json.loads((path / "config.json").read_text())
        except (OSError, ValueError):
            config = None
    if weights.suffix.lower() != ".safetensors" or not weights.is_file():
        return None
    try:
        det = detect(read_safetensors_shapes(weights), config)
    except (OSError, ValueError, KeyError, TypeError, ControlNetError):
        return None
    return det.family, det.kind


_cache: dict[tuple[str, int, int], tuple[str, str] | None] = {}
_lock = threading.Lock()


def cached_header(path: Path) -> tuple[str, str] | None:
    """`detect_header`, remembered per path, size and mtime; None also when the file cannot be stat'ed."""
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (os.fspath(path), stat.st_size, stat.st_mtime_ns)
    with _lock:
        known = key in _cache
        found = _cache.get(key)
    if not known:
        found = detect_header(path)
        with _lock:
            _cache[key] = found
    return found
