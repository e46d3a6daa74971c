"""Which SD family (sd1 / sd2 / sdxl) a control model file is for, cheaply enough to filter a dropdown.

A `.safetensors` file (or a diffusers folder's weights) is judged by its tensor shapes, read from the file's
JSON header alone - a few kilobytes, never the weights (`model_files.read_safetensors` reads whole files) -
and `lib_controlnet.models.detection`, the same rules the loader uses. Pickle files (`.pth`, `.ckpt`...) have no
header to read without unpickling, and formats detection does not run yet (T2I-Adapter, Control-LoRA...)
have no arch to judge, so for those the family is guessed from the file name the way the reference does.
Results are cached per (path, size, mtime).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from lib_controlnet.errors import ControlNetError
from lib_controlnet.models.detection import detect

FAMILIES = ("sd1", "sd2", "sdxl")
FAMILY_LABELS = {"sd1": "SD1.x", "sd2": "SD2.x", "sdxl": "SDXL"}
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


def family_from_name(name: str) -> str | None:
    """The reference's guess from a model name: 'sd14/15/16' -> sd1, 'sd21'/'2.1' -> sd2, 'xl' -> sdxl."""
    lowered = name.lower()
    if any(f"sd{v}" in lowered for v in ("14", "15", "16")):
        return "sd1"
    if "sd21" in lowered or "2.1" in lowered:
        return "sd2"
    if "xl" in lowered:
        return "sdxl"
    return None


def family_from_file(path: str | os.PathLike) -> str | None:
    """The family detection finds in the file's header; None when the shapes cannot tell."""
    path = Path(path)
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
        return detect(read_safetensors_shapes(weights), config).family
    except (OSError, ValueError, KeyError, TypeError, ControlNetError):
        return None


_cache: dict[tuple[str, int, int], str | None] = {}
_lock = threading.Lock()


def model_family(path: str | os.PathLike, name: str = "") -> str | None:
    """The file's family from its shapes (cached per path, size and mtime), else guessed from `name`."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return family_from_name(name or path.name)
    key = (os.fspath(path), stat.st_size, stat.st_mtime_ns)
    with _lock:
        known = key in _cache
        family = _cache.get(key)
    if not known:
        family = family_from_file(path)
        with _lock:
            _cache[key] = family
    return family if family is not None else family_from_name(name or path.name)


def compatible(model_family_: str | None, checkpoint_family: str | None) -> bool:
    """Unknown on either side counts as compatible (the reference's rule): never hide a model we cannot judge."""
    return model_family_ is None or checkpoint_family is None or model_family_ == checkpoint_family


def label(family: str | None) -> str:
    return FAMILY_LABELS.get(family or "", "unknown family")
