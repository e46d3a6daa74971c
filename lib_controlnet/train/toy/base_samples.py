"""txt2img with the toy checkpoint through the standalone host, on captions of scenes it never saw: a picture
grid (generated above rendered) and how often the pictures follow their captions (`prompt_following`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .base_model import RESOLUTION
from .dataset import SceneSet
from .prompt_following import prompt_following, summary

HELD_OUT_SEED = 1_000  # scene seeds the training sets (seed 0, 1...) do not use


def sample_report(checkpoint: Path, grid: Path | None = None, count: int = 16, steps: int = 20,
                  cfg_scale: float = 7.0, seed: int = 0) -> dict:
    from standalone import GenerationRequest, Pipeline, load_sd_model

    model = load_sd_model(checkpoint)
    pipeline = Pipeline(model)
    scenes = SceneSet.make(count, RESOLUTION, seed=HELD_OUT_SEED + seed)
    pictures, results = [], []
    for k, scene in enumerate(scenes.scenes):
        result = pipeline.generate(GenerationRequest(prompt=scene.caption, width=RESOLUTION, height=RESOLUTION,
                                                     steps=steps, cfg_scale=cfg_scale, seed=seed + k))
        image = np.asarray(result.images[0].convert("RGB"))
        pictures.append(image)
        results.append(prompt_following(image, scene))
    if grid is not None:
        rows = [np.concatenate(pictures, axis=1), np.concatenate(list(scenes.images), axis=1)]
        Path(grid).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.concatenate(rows, axis=0)).save(grid)
    report = summary(results)
    report["captions"] = [s.caption for s in scenes.scenes]
    return report
