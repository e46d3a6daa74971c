"""Drawing OpenPose keypoints the way the openpose ControlNets were trained to read them.

Body: 17 limbs as filled ellipses (4 px half-width) in the limb's colour at 60 %, then the 18 joints as
4 px discs in full colour, colours running round the hue circle in OpenPose order. Hands: 20 bones as 2 px
lines coloured by hue, joints as blue 4 px discs. Face: white 3 px discs. A group of points all within
0..1 is read as normalised, otherwise as pixels (both occur in saved pose files).
"""

from __future__ import annotations

import colorsys
import math

import cv2
import numpy as np

from .openpose_format import PersonPose, Points

# Limbs as (joint, joint) in 0-based OpenPose body order, in the order (and so the colour) OpenPose draws.
BODY_LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
              (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
BODY_COLOURS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
                (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
                (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
LIMB_SHADE = 0.6
LIMB_HALF_WIDTH = 4
JOINT_RADIUS = 4

# Hand bones from the wrist (0) out along each finger (thumb 1-4, index 5-8, middle 9-12, ring 13-16,
# little 17-20).
HAND_BONES = tuple((0 if j % 4 == 0 else j, j + 1) for j in range(20))
HAND_JOINT_COLOUR = (0, 0, 255)
HAND_LINE_THICKNESS = 2
FACE_COLOUR = (255, 255, 255)
FACE_RADIUS = 3
# AP-10K animal skeletons (animal_openpose): 17 bones as 5 px lines, each in its own colour.
ANIMAL_BONES = ((0, 1), (1, 2), (0, 2), (2, 3), (3, 8), (8, 9), (9, 10), (3, 5), (5, 6), (6, 7), (3, 4), (4, 14),
                (14, 15), (15, 16), (4, 11), (11, 12), (12, 13))
ANIMAL_COLOURS = ((255, 255, 255), (100, 255, 100), (150, 255, 255), (100, 50, 255), (50, 150, 200), (0, 255, 255),
                  (0, 150, 0), (0, 0, 255), (0, 0, 150), (255, 50, 255), (255, 0, 255), (255, 0, 0), (150, 0, 0),
                  (255, 255, 100), (0, 150, 0), (255, 255, 0), (150, 150, 150))
ANIMAL_LINE_THICKNESS = 5
# Points at (or numerically near) the canvas origin are "missing" in hand and face data.
ORIGIN_EPS = 0.01


def _hand_bone_colour(index: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(index / float(len(HAND_BONES)), 1.0, 1.0)
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def _scale(points: Points, height: int, width: int) -> tuple[float, float]:
    """Multipliers that turn this group's coordinates into pixels."""
    present = [p for p in points if p is not None]
    normalised = bool(present) and all(0 <= abs(x) <= 1 and 0 <= abs(y) <= 1 for x, y in present)
    return (float(width), float(height)) if normalised else (1.0, 1.0)


def draw_body(canvas: np.ndarray, body: Points) -> None:
    height, width = canvas.shape[:2]
    sx, sy = _scale(body, height, width)
    for (a, b), colour in zip(BODY_LIMBS, BODY_COLOURS):
        if a >= len(body) or b >= len(body) or body[a] is None or body[b] is None:
            continue
        x1, y1 = body[a][0] * sx, body[a][1] * sy
        x2, y2 = body[b][0] * sx, body[b][1] * sy
        length = math.hypot(x1 - x2, y1 - y2)
        angle = math.degrees(math.atan2(y1 - y2, x1 - x2))
        centre = (int((x1 + x2) / 2), int((y1 + y2) / 2))
        polygon = cv2.ellipse2Poly(centre, (int(length / 2), LIMB_HALF_WIDTH), int(angle), 0, 360, 1)
        cv2.fillConvexPoly(canvas, polygon, [int(c * LIMB_SHADE) for c in colour])
    for point, colour in zip(body, BODY_COLOURS):
        if point is not None:
            cv2.circle(canvas, (int(point[0] * sx), int(point[1] * sy)), JOINT_RADIUS, colour, thickness=-1)


def draw_hand(canvas: np.ndarray, hand: Points | None) -> None:
    if not hand:
        return
    height, width = canvas.shape[:2]
    sx, sy = _scale(hand, height, width)
    pixels = [None if p is None else (int(p[0] * sx), int(p[1] * sy)) for p in hand]
    for index, (a, b) in enumerate(HAND_BONES):
        if b >= len(pixels) or pixels[a] is None or pixels[b] is None:
            continue
        if min(*pixels[a], *pixels[b]) > ORIGIN_EPS:
            cv2.line(canvas, pixels[a], pixels[b], _hand_bone_colour(index), thickness=HAND_LINE_THICKNESS)
    for pixel in pixels:
        if pixel is not None and min(pixel) > ORIGIN_EPS:
            cv2.circle(canvas, pixel, JOINT_RADIUS, HAND_JOINT_COLOUR, thickness=-1)


def draw_face(canvas: np.ndarray, face: Points | None) -> None:
    if not face:
        return
    height, width = canvas.shape[:2]
    sx, sy = _scale(face, height, width)
    for point in face:
        if point is None:
            continue
        pixel = (int(point[0] * sx), int(point[1] * sy))
        if min(pixel) > ORIGIN_EPS:
            cv2.circle(canvas, pixel, FACE_RADIUS, FACE_COLOUR, thickness=-1)


def draw_poses(people: list[PersonPose], height: int, width: int, *, body: bool = True, hands: bool = True,
               face: bool = True) -> np.ndarray:
    """A black HxWx3 canvas with every person drawn (body first, then hands, then face)."""
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for person in people:
        if body:
            draw_body(canvas, person.body)
        if hands:
            draw_hand(canvas, person.left_hand)
            draw_hand(canvas, person.right_hand)
        if face:
            draw_face(canvas, person.face)
    return canvas


def draw_animals(animals: list[Points], height: int, width: int) -> np.ndarray:
    """A black HxWx3 canvas with each AP-10K skeleton's bones drawn (points normalised or in pixels)."""
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for animal in animals:
        sx, sy = _scale(animal, height, width)
        for (a, b), colour in zip(ANIMAL_BONES, ANIMAL_COLOURS):
            if b < len(animal) and animal[a] is not None and animal[b] is not None:
                cv2.line(canvas, (int(animal[a][0] * sx), int(animal[a][1] * sy)),
                         (int(animal[b][0] * sx), int(animal[b][1] * sy)), colour, ANIMAL_LINE_THICKNESS)
    return canvas
