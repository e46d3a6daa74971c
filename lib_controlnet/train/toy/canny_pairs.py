"""The toy canny ControlNet's training data: rendered scenes and their canny maps, written as a folder in the
original tutorial's layout (`..pairs`), so the package's trainer (`python -m lib_controlnet.train`) reads it
like any user's data. The scenes come from their own seed, not the base model's training scenes."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from ..edges import canny_map
from ..pairs import INDEX_FILE, write_index
from .base_model import RESOLUTION
from .dataset import SceneSet

PAIRS_SEED = 2  # the base trains on seed 0's scenes, its VAE is checked on seed 1's


def write_canny_pairs(folder: Path, count: int, size: int = RESOLUTION, seed: int = PAIRS_SEED) -> Path:
    """`folder`/prompt.json, source/i.png (canny map), target/i.png (the scene); returns the folder. A folder that
    already has its index is left as it is."""
    folder = Path(folder)
    if (folder / INDEX_FILE).is_file():
        return folder
    (folder / "source").mkdir(parents=True, exist_ok=True)
    (folder / "target").mkdir(exist_ok=True)
    scenes = SceneSet.make(count, size, seed)
    items = []
    for i, (scene, image) in enumerate(zip(scenes.scenes, scenes.images)):
        Image.fromarray(canny_map(image)).save(folder / "source" / f"{i}.png")
        Image.fromarray(image).save(folder / "target" / f"{i}.png")
        items.append((f"source/{i}.png", f"target/{i}.png", scene.caption))
    write_index(folder, items)  # last: a folder with its index is complete
    return folder
