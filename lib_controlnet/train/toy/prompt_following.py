"""Whether a generated picture shows what its caption says: the background colour, and each named shape's
colour where the caption puts it.

A pixel "has" a palette colour when it is within `TOLERANCE` (RGB distance) of it, nearer to it than to any
other palette colour, and so are its four neighbours. The background is right when most border pixels have
its colour; a shape is found when at least `MIN_SHARE` of the picture has its colour, and placed right when
those pixels' centroid gets the caption's position words (the 3x3 grid of `scenes.position_words`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scenes import COLOURS, Scene, position_words

TOLERANCE = 70.0
MIN_SHARE = 0.01  # a shape of the smallest size covers ~3 % of a 64x64 picture
PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)
NAMES = list(COLOURS)


def colour_labels(image: np.ndarray) -> np.ndarray:
    """HxW int: the index of each pixel's palette colour (NAMES order), -1 where it has none."""
    distances = np.linalg.norm(image.astype(np.float32)[:, :, None, :] - PALETTE[None, None], axis=-1)
    nearest = distances.argmin(axis=-1)
    labels = np.where(distances.min(axis=-1) <= TOLERANCE, nearest, -1)
    # an antialiased edge between two colours can look like a third (black on white: gray), so only pixels
    # whose four neighbours have their colour count
    padded = np.pad(labels, 1, mode="edge")
    same = ((padded[:-2, 1:-1] == labels) & (padded[2:, 1:-1] == labels) & (padded[1:-1, :-2] == labels)
            & (padded[1:-1, 2:] == labels))
    return np.where(same, labels, -1)


@dataclass(frozen=True)
class Following:
    background: bool  # most border pixels have the background's colour
    found: int  # shapes whose colour covers at least MIN_SHARE
    placed: int  # of those, the ones whose colour's centroid is at the caption's position
    shapes: int

    @property
    def all_right(self) -> bool:
        return self.background and self.placed == self.shapes


def prompt_following(image: np.ndarray, scene: Scene) -> Following:
    labels = colour_labels(image)
    h, w = labels.shape
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    background = bool((border == NAMES.index(scene.background)).mean() > 0.5)
    found = placed = 0
    for shape in scene.shapes:
        mask = labels == NAMES.index(shape.colour)
        if mask.mean() < MIN_SHARE:
            continue
        found += 1
        ys, xs = np.nonzero(mask)
        if position_words((xs.mean() + 0.5) / w, (ys.mean() + 0.5) / h) == shape.position:
            placed += 1
    return Following(background, found, placed, len(scene.shapes))


def summary(results: list[Following]) -> dict[str, float]:
    """Shares over a set of pictures: right background, shapes found, shapes placed, pictures all right."""
    shapes = sum(r.shapes for r in results) or 1
    n = len(results) or 1
    return {"background": sum(r.background for r in results) / n, "found": sum(r.found for r in results) / shapes,
            "placed": sum(r.placed for r in results) / shapes, "all_right": sum(r.all_right for r in results) / n}
