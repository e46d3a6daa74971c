"""Reading model files into state dicts, safely.

- `.safetensors`: read straight into tensors (no pickle, no mmap, one copy of the data).
- `.pth/.ckpt/.pt/.bin`: `torch.load(weights_only=True)` only; a pickle that needs arbitrary globals
  (code execution) is refused with an error naming the file, and nothing in it runs.
- a diffusers folder (`config.json` + `diffusion_pytorch_model.safetensors`/`.bin`): the weights plus the config.
Anything else is refused.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ModelFileError, NotFoundError, UnsafeFileError

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
MODEL_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES
DIFFUSERS_WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


@dataclass
class RawModel:
    """A state dict as read from disk, with what we know about where it came from."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    config: dict = field(default_factory=dict)  # diffusers config.json, when the file came with one


def read_model(path: str | os.PathLike) -> RawModel:
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"model file not found: {path}")
    if path.is_dir():
        return _read_diffusers_folder(path)
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return RawModel(path, read_safetensors(path))
    if suffix in PICKLE_SUFFIXES:
        return RawModel(path, read_pickle_weights(path))
    raise ModelFileError(
        f"{path.name}: unsupported file type '{suffix}' (expected one of {', '.join(MODEL_SUFFIXES)})"
    )


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}
_MAX_HEADER = 100 * 2**20


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read every tensor straight from the file into its own memory: one copy, no pickle, no mmap.

    Not memory-mapped on purpose: a model file replaced or truncated on disk while loaded would
    otherwise change the weights under us or kill the process with SIGBUS.
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            header_len = int.from_bytes(f.read(8), "little")
            if not 0 < header_len <= min(_MAX_HEADER, size - 8):
                raise ValueError("bad header length")
            header = json.loads(f.read(header_len))
            data_start = 8 + header_len
            entries = sorted(
                ((k, v) for k, v in header.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"][0]
            )
            tensors = {}
            for name, info in entries:
                begin, end = (int(o) for o in info["data_offsets"])
                dtype = _SAFETENSORS_DTYPES[info["dtype"]]
                shape = [int(d) for d in info["shape"]]
                count = 1
                for d in shape:
                    count *= d
                if not 0 <= begin <= end <= size - data_start or end - begin != count * dtype.itemsize:
                    raise ValueError(f"tensor '{name}' has inconsistent offsets")
                buffer = torch.empty(end - begin, dtype=torch.uint8)
                f.seek(data_start + begin)
                if end > begin and f.readinto(memoryview(buffer.numpy())) != end - begin:
                    raise ValueError(f"tensor '{name}' is truncated")
                tensors[name] = buffer.view(dtype).reshape(shape)
            return tensors
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelFileError(f"{path.name}: not a readable safetensors file ({e})") from e


def load_weights_only(f, **kwargs):
    """`torch.load(f, weights_only=True)`, from torch itself whatever a host put at `torch.load`.

    A1111 replaces `torch.load` with its own checker (modules/safe.py), which refuses the records torch >= 2.1
    writes into a save (`.format_version`, `.storage_alignment`) and then returns None instead of raising:
    every file or blob saved by a current torch would read as None. Its check only adds a weaker allow-list
    to what weights_only already enforces (tensors and plain containers, no globals), so we skip it by
    calling torch.serialization.load, the function `torch.load` is when nobody patched it."""
    return torch.serialization.load(f, weights_only=True, **kwargs)


def read_pickle_weights(path: Path) -> dict[str, torch.Tensor]:
    """torch.load restricted to tensors and plain containers; never executes code from the file."""
    try:
        obj = load_weights_only(str(path), map_location="cpu", mmap=_is_zip(path))
    except pickle.UnpicklingError as e:
        raise UnsafeFileError(
            f"{path.name}: refused to load, the file needs arbitrary code to unpickle "
            f"(convert it to .safetensors). Detail: {str(e).splitlines()[0]}"
        ) from e
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise ModelFileError(f"{path.name}: not a readable PyTorch weights file ({e})") from e
    return _unwrap_state_dict(obj, path)


def _is_zip(path: Path) -> bool:
    # mmap needs the zip container of torch>=1.6 saves; old tar/legacy pickles are read normally.
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def _unwrap_state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    # Lightning checkpoints wrap the weights in {"state_dict": ...}; some tools use {"model": ...}; LeReS'
    # res101.pth keeps its network under "depth_model" (beside the shift and focal-length networks).
    for key in ("state_dict", "model", "module", "depth_model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict) and not _all_tensors(obj):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ModelFileError(f"{path.name}: holds a {type(obj).__name__}, not a state dict")
    if isinstance(obj.get("image_proj"), dict) and isinstance(obj.get("ip_adapter"), dict):
        # IP-Adapter .bin files: {"image_proj": {...}, "ip_adapter": {...}}; their .safetensors twins have
        # the same tensors under "image_proj." / "ip_adapter." keys, which is what detection reads
        obj = {f"{part}.{k}": v for part in ("image_proj", "ip_adapter") for k, v in obj[part].items()}
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelFileError(f"{path.name}: holds no tensors")
    return tensors


def _all_tensors(d: dict) -> bool:
    return all(isinstance(v, torch.Tensor) for v in d.values())


def _read_diffusers_folder(path: Path) -> RawModel:
    config_path = path / "config.json"
    weights = next((path / n for n in DIFFUSERS_WEIGHT_NAMES if (path / n).exists()), None)
    if not config_path.exists() or weights is None:
        raise ModelFileError(
            f"{path.name}: a model folder must hold config.json and one of {', '.join(DIFFUSERS_WEIGHT_NAMES)}"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelFileError(f"{path.name}/config.json: not valid JSON ({e})") from e
    raw = read_model(weights)
    return RawModel(path, raw.state_dict, config)
