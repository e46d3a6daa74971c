"""A folder of (control image, target image, prompt) triples in the original ControlNet tutorial's layout.

    <folder>/prompt.json    one JSON object per line: {"source": "source/0.png", "target": "target/0.png",
                            "prompt": "pale golden rod circle with old lace background"}
    <folder>/source/...     control maps (the tutorial's fill50k: white circle outlines on black)
    <folder>/target/...     the images the model should make from them

Paths are relative to the folder and must stay inside it. Images are read with PIL, made RGB, and brought to
`resolution` x `resolution`: scaled so the short side fits, then centre-cropped. Control maps are resized like
the hosts resize a detected map (thin lines stay lines); targets with area/cubic interpolation. Tensors are
what the networks take: control in [0, 1], target in [-1, 1], both CHW float32.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from lib_controlnet.errors import InputError
from lib_controlnet.preprocessors.map_resize import resize_to_target

INDEX_FILE = "prompt.json"


@dataclass(frozen=True)
class Pair:
    source: Path
    target: Path
    prompt: str


def _inside(folder: Path, relative: str, line: int, field: str) -> Path:
    path = (folder / relative).resolve()
    if not isinstance(relative, str) or os.path.isabs(relative) or not path.is_relative_to(folder.resolve()):
        raise InputError(f"{INDEX_FILE} line {line}: {field} {relative!r} is not a path inside {folder}", field=field)
    if not path.is_file():
        raise InputError(f"{INDEX_FILE} line {line}: {field} file {relative!r} does not exist", field=field)
    return path


def read_index(folder: str | os.PathLike) -> list[Pair]:
    folder = Path(folder)
    index = folder / INDEX_FILE
    if not index.is_file():
        raise InputError(f"{folder} has no {INDEX_FILE} (one JSON object per line with source, target, prompt)",
                         field="data")
    pairs = []
    for n, raw in enumerate(index.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except ValueError as e:
            raise InputError(f"{INDEX_FILE} line {n} is not JSON ({e})", field="data") from None
        missing = [k for k in ("source", "target", "prompt") if not isinstance(item.get(k) if isinstance(item, dict)
                                                                          else None, str)]
        if missing:
            raise InputError(f"{INDEX_FILE} line {n} lacks {', '.join(missing)} (strings)", field="data")
        pairs.append(Pair(_inside(folder, item["source"], n, "source"), _inside(folder, item["target"], n, "target"),
                          item["prompt"]))
    if not pairs:
        raise InputError(f"{index} lists no pairs", field="data")
    return pairs


def write_index(folder: str | os.PathLike, items: Iterable[tuple[str, str, str]]) -> Path:
    """Write prompt.json for (source, target, prompt) paths relative to `folder`."""
    path = Path(folder) / INDEX_FILE
    lines = [json.dumps({"source": s, "target": t, "prompt": p}) for s, t, p in items]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _cover(image: np.ndarray, size: int) -> tuple[int, int]:
    """(height, width) after scaling so the short side is `size`."""
    h, w = image.shape[:2]
    k = size / min(h, w)
    return max(size, round(h * k)), max(size, round(w * k))


def _centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(image[top:top + size, left:left + size])


def fit_target(image: np.ndarray, size: int) -> np.ndarray:
    h, w = _cover(image, size)
    if (h, w) != image.shape[:2]:
        shrinking = h * w < image.shape[0] * image.shape[1]
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    return _centre_crop(image, size)


def fit_control(image: np.ndarray, size: int) -> np.ndarray:
    return resize_to_target(image, "Crop and Resize", size, size)


def to_control_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1)


def to_target_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)


class PairDataset:
    """Pairs of a folder, loaded on demand at one resolution: `ds[i]` -> (control, target, prompt)."""

    def __init__(self, folder: str | os.PathLike, resolution: int):
        if resolution % 8 or resolution < 64:
            raise InputError(f"resolution must be a multiple of 8, at least 64 (got {resolution})", field="resolution")
        self.folder = Path(folder)
        self.resolution = resolution
        self.pairs = read_index(self.folder)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        pair = self.pairs[i]
        control = fit_control(read_rgb(pair.source), self.resolution)
        target = fit_target(read_rgb(pair.target), self.resolution)
        return to_control_tensor(control), to_target_tensor(target), pair.prompt
