"""Which SD family (sd1 / sd2 / sdxl) a control model file is for, cheaply enough to filter a dropdown.

A `.safetensors` file (or a diffusers folder's weights) is judged by its tensor shapes, read from the file's
JSON header alone - a few kilobytes, never the weights (`model_files.read_safetensors` reads whole files) -
and `lib_controlnet.models.detection`, the same rules the loader uses. Pickle files (`.pth`, `.ckpt`...) have no
header to read without unpickling, and formats detection does not run yet (T2I-Adapter, Control-LoRA...)
have no arch to judge, so for those the family is guessed from the file name the way the reference does.
The header also tells the model kind (`model_kind`: union models are listed under the control types a
union serves whatever their name). Header reading lives in `models.headers`; results are cached per (path,
size, mtime).
"""

from __future__ import annotations

import os
from pathlib import Path

from lib_controlnet.models.headers import cached_header, detect_header, read_safetensors_shapes

__all__ = ["compatible", "family_from_file", "family_from_name", "label", "model_family", "model_kind",
           "read_safetensors_shapes"]

FAMILIES = ("sd1", "sd2", "sdxl")
FAMILY_LABELS = {"sd1": "SD1.x", "sd2": "SD2.x", "sdxl": "SDXL"}


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
    found = detect_header(Path(path))
    return found[0] if found else None


def model_family(path: str | os.PathLike, name: str = "") -> str | None:
    """The file's family from its shapes (cached per path, size and mtime), else guessed from `name`."""
    path = Path(path)
    found = cached_header(path)
    return found[0] if found else family_from_name(name or path.name)


def model_kind(path: str | os.PathLike) -> str | None:
    """The model kind its header says ("controlnet", "controlnet_union"...); None when it cannot tell."""
    found = cached_header(Path(path))
    return found[1] if found else None


def compatible(model_family_: str | None, checkpoint_family: str | None) -> bool:
    """Unknown on either side counts as compatible (the reference's rule): never hide a model we cannot judge."""
    return model_family_ is None or checkpoint_family is None or model_family_ == checkpoint_family


def label(family: str | None) -> str:
    return FAMILY_LABELS.get(family or "", "unknown family")
