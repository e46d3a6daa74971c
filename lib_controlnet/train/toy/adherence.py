"""How closely the toy's generations follow a canny control map: held-out scenes, their canny maps as the unit's
control, and the generated picture's canny edges scored against the map (`..edges.image_edge_f1`, 2 px).

The scenes are coloured shapes on white, the request the acceptance test sends. Each is generated twice with
one seed, with the unit and without it, so the gain is the ControlNet's alone; the captions' colours are
checked too (`prompt_following`). `curve` scores every snapshot the trainer kept, for the paper's "sudden
convergence" plot.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..edges import canny_map, image_edge_f1
from .base_model import RESOLUTION
from .dataset import SceneSet
from .prompt_following import prompt_following, summary

CONTROL_SEED = 3_000  # scenes neither the base (seeds 0, 1, 1000+) nor the canny pairs (seed 2) use


@dataclass(frozen=True)
class Adherence:
    edge_f1: float  # mean over the scenes, with the unit
    edge_f1_without: float  # the same seeds without it
    following: dict  # prompt_following's summary of the pictures made with the unit
    pictures: list  # (control map, without, with) HxWx3 uint8 per scene

    def report(self) -> dict:
        return {"edge_f1": round(self.edge_f1, 4), "edge_f1_without": round(self.edge_f1_without, 4),
                "following": {k: round(v, 4) for k, v in self.following.items()}}


def control_scenes(count: int, seed: int = 0) -> SceneSet:
    """Held-out scenes on white, as the acceptance request has them: coloured shapes on white (on a dark
    background a shape the base paints in the wrong dark colour has no edge to score)."""
    return SceneSet.on_background(count, RESOLUTION, "white", seed=CONTROL_SEED + seed)


def measure(base, control_model, count: int = 8, steps: int = 20, cfg_scale: float = 7.0, seed: int = 0,
            plain: list | None = None, **unit_fields) -> Adherence:
    """`base`: a loaded standalone model; `control_model`: a loaded ControlNet (None: without only); `plain`: the
    pictures without the unit from an earlier call with the same scenes and seeds (they do not change)."""
    from lib_controlnet import BoundUnit
    from standalone import GenerationRequest, Pipeline

    pipeline = Pipeline(base)
    scenes = control_scenes(count, seed)

    def generate(k: int, units) -> np.ndarray:
        result = pipeline.generate(GenerationRequest(prompt=scenes.scenes[k].caption, width=RESOLUTION,
                                                     height=RESOLUTION, steps=steps, cfg_scale=cfg_scale,
                                                     seed=seed + k, units=units))
        return np.asarray(result.images[0].convert("RGB"))

    with_f1, without_f1, following, pictures = [], [], [], []
    for k, (scene, image) in enumerate(zip(scenes.scenes, scenes.images)):
        control = canny_map(image)
        without = plain[k] if plain is not None else generate(k, [])
        made = without
        if control_model is not None:
            hint = torch.from_numpy(control).permute(2, 0, 1)[None].float() / 255
            made = generate(k, [BoundUnit(control_model, hint, **unit_fields)])
        without_f1.append(image_edge_f1(without, control))
        with_f1.append(image_edge_f1(made, control))
        following.append(prompt_following(made, scene))
        pictures.append((control, without, made))
    return Adherence(float(np.mean(with_f1)), float(np.mean(without_f1)), summary(following), pictures)


def snapshots(folder: Path) -> list[tuple[int, Path]]:
    """(step, file) of the trainer's snapshots (`step_000250.safetensors`...), in step order."""
    found = []
    for path in Path(folder).glob("step_*.safetensors"):
        match = re.fullmatch(r"step_(\d+)\.safetensors", path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def curve(base, snapshot_dir: Path, count: int = 8, steps: int = 20, seed: int = 0) -> tuple[list[dict], Adherence]:
    """Edge F1 with each snapshot (and step 0: no unit, which is what zero convolutions give), and the last
    measurement (the last snapshot is the trained file: the trainer writes both at its last save)."""
    from lib_controlnet import load_control_model

    last = measure(base, None, count, steps, seed=seed)
    plain = [without for _, without, _ in last.pictures]
    points = [{"step": 0, **last.report()}]
    for step, path in snapshots(snapshot_dir):
        last = measure(base, load_control_model(path), count, steps, seed=seed, plain=plain)
        points.append({"step": step, **last.report()})
    return points, last


def plot_curve(points: list[dict], path: Path) -> Path:
    """The learning curve as a PNG (matplotlib, a development requirement: only this plot needs it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [p["step"] for p in points]
    fig, ax = plt.subplots(figsize=(6, 3.4), dpi=100)
    ax.plot(steps, [p["edge_f1"] for p in points], marker="o", label="with the canny unit")
    ax.plot(steps, [p["edge_f1_without"] for p in points], linestyle="--", label="same seeds, no unit")
    ax.set_xlabel("ControlNet training step (batch 8)")
    ax.set_ylabel("edge F1 vs control map (2 px)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("Toy canny ControlNet: control adherence during training")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def picture_grid(adherence: Adherence, path: Path, scale: int = 2) -> Path:
    """Rows of (control map, without the unit, with it), each picture `scale` times larger (nearest)."""
    from PIL import Image

    rows = [np.concatenate(row, axis=1) for row in adherence.pictures]
    grid = Image.fromarray(np.concatenate(rows, axis=0))
    grid = grid.resize((grid.width * scale, grid.height * scale), Image.Resampling.NEAREST)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return Path(path)


def write_json(points, path: Path) -> Path:
    Path(path).write_text(json.dumps(points, indent=1) + "\n")
    return Path(path)
