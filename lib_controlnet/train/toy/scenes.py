"""Synthetic scenes for the toy base model: flat coloured shapes on a plain background, and their captions.

A scene is 1-3 shapes (square, circle, triangle; squares and triangles turned by a random angle) of distinct
colours on a background of another colour, kept apart so each has its own position word. The caption names
each shape by colour, kind and position (a 3x3 grid: "at the top left", "on the right", "in the center") and
the background: "a red circle on the left and a blue square at the bottom right, on a white background".
Images are drawn 4x larger and averaged down, so edges are antialiased like a photo's, not jagged.

Everything comes from one `numpy.random.Generator`, so a seed gives the same scenes on every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 70),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "orange": (245, 140, 30),
    "purple": (140, 60, 180),
    "black": (25, 25, 25),
    "white": (245, 245, 245),
    "gray": (128, 128, 128),
}
BACKGROUNDS = ("white", "white", "white", "black", "gray", "yellow", "blue")  # white most often
KINDS = ("square", "circle", "triangle")
SUPERSAMPLE = 4
MIN_SHAPES, MAX_SHAPES = 1, 3


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    cx: float  # centre, as a fraction of the width / height
    cy: float
    size: float  # circumradius, as a fraction of the short side
    angle: float  # radians (squares and triangles)

    @property
    def position(self) -> str:
        return position_words(self.cx, self.cy)


@dataclass(frozen=True)
class Scene:
    background: str
    shapes: tuple[Shape, ...]

    @property
    def caption(self) -> str:
        return caption(self)


def position_words(cx: float, cy: float) -> str:
    column = "left" if cx < 0.4 else "right" if cx > 0.6 else ""
    row = "top" if cy < 0.4 else "bottom" if cy > 0.6 else ""
    if row and column:
        return f"at the {row} {column}"
    if row:
        return f"at the {row}"
    if column:
        return f"on the {column}"
    return "in the center"


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption(scene: Scene) -> str:
    parts = [f"{article(s.colour)} {s.colour} {s.kind} {s.position}" for s in scene.shapes]
    shapes = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{shapes}, on a {scene.background} background"


def sample_scene(rng: np.random.Generator) -> Scene:
    background = str(rng.choice(BACKGROUNDS))
    count = int(rng.integers(MIN_SHAPES, MAX_SHAPES + 1))
    colours = [c for c in COLOURS if c != background]
    picked = rng.choice(len(colours), size=count, replace=False)
    shapes: list[Shape] = []
    for colour_index in picked:
        for _ in range(50):  # rejection sampling: keep shapes apart (their circles do not touch)
            size = float(rng.uniform(0.12, 0.28))
            cx, cy = (float(v) for v in rng.uniform(size + 0.02, 1 - size - 0.02, size=2))
            if all(math.hypot(cx - s.cx, cy - s.cy) > size + s.size + 0.03 for s in shapes):
                break
        else:
            continue
        kind = str(rng.choice(KINDS))
        angle = float(rng.uniform(-math.pi / 6, math.pi / 6)) if kind != "circle" else 0.0
        shapes.append(Shape(kind, colours[int(colour_index)], cx, cy, size, angle))
    return Scene(background, tuple(shapes))


def polygon(shape: Shape, width: int, height: int) -> list[tuple[float, float]]:
    """Corner points in pixels: a square's 4 or a triangle's 3 (pointing up before the turn)."""
    corners = 4 if shape.kind == "square" else 3
    start = math.pi / 4 if corners == 4 else -math.pi / 2
    r = shape.size * min(width, height)
    return [
        (shape.cx * width + r * math.cos(start + shape.angle + 2 * math.pi * k / corners),
         shape.cy * height + r * math.sin(start + shape.angle + 2 * math.pi * k / corners))
        for k in range(corners)
    ]


def render(scene: Scene, width: int, height: int) -> np.ndarray:
    """HxWx3 uint8, antialiased."""
    big_w, big_h = width * SUPERSAMPLE, height * SUPERSAMPLE
    image = Image.new("RGB", (big_w, big_h), COLOURS[scene.background])
    draw = ImageDraw.Draw(image)
    for shape in scene.shapes:
        fill = COLOURS[shape.colour]
        if shape.kind == "circle":
            # a circle's radius is a square's half-diagonal / 1.25, so circles do not look bigger than squares
            r = shape.size * min(big_w, big_h) / 1.25
            x, y = shape.cx * big_w, shape.cy * big_h
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
        else:
            draw.polygon(polygon(shape, big_w, big_h), fill=fill)
    return np.asarray(image.resize((width, height), Image.Resampling.BOX))


def shape_mask(shape: Shape, width: int, height: int) -> np.ndarray:
    """HxW bool: where `shape` covers at least half a pixel (for colour checks)."""
    alone = Scene("black", (Shape(shape.kind, "white", shape.cx, shape.cy, shape.size, shape.angle),))
    return render(alone, width, height)[:, :, 0] > 135
