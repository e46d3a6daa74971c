"""A fixed, seeded set of rendered scenes for training the toy models: images (uint8) and their captions.

Scene i comes from its own generator, seeded by (seed, i): the set of the first n scenes is the same whatever
n is, on every machine, and rendering is cheap (~1 ms a scene), so nothing is stored on disk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .scenes import Scene, render, sample_scene


def scene_at(seed: int, index: int) -> Scene:
    return sample_scene(np.random.default_rng([seed, index]))


@dataclass
class SceneSet:
    scenes: list[Scene]
    images: np.ndarray  # N x H x W x 3 uint8

    @classmethod
    def of(cls, scenes: list[Scene], size: int) -> SceneSet:
        images = np.stack([render(s, size, size) for s in scenes]) if scenes else np.zeros((0, size, size, 3),
                                                                                           np.uint8)
        return cls(scenes, images)

    @classmethod
    def make(cls, count: int, size: int, seed: int = 0) -> SceneSet:
        return cls.of([scene_at(seed, i) for i in range(count)], size)

    @classmethod
    def on_background(cls, count: int, size: int, background: str, seed: int = 0) -> SceneSet:
        """The first `count` scenes of the seed's sequence that have `background` (the others skipped)."""
        scenes, index = [], 0
        while len(scenes) < count:
            scene = scene_at(seed, index)
            if scene.background == background:
                scenes.append(scene)
            index += 1
        return cls.of(scenes, size)

    def __len__(self) -> int:
        return len(self.scenes)

    @property
    def captions(self) -> list[str]:
        return [s.caption for s in self.scenes]

    def pixels(self, indices) -> torch.Tensor:
        """B x 3 x H x W float32 in [-1, 1] (the VAE's input range)."""
        batch = torch.from_numpy(self.images[np.asarray(indices)]).permute(0, 3, 1, 2).float()
        return batch / 127.5 - 1
