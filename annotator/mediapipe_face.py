"""mediapipe_face: the face mesh outline (face oval, eyes, brows, lips, pupils) drawn as the reference draws it,
for the "mediapipe face" ControlNets."""

from __future__ import annotations

import cv2
import numpy as np

from .mediapipe_loader import solutions
from .util import hwc3, resize_short_side

# Faces smaller than this (short side of their landmark box, at processing resolution) are not drawn.
MIN_FACE_PIXELS = 64
LINE_THICKNESS = 2
PUPIL_HALF_WIDTH = 2

# RGB colours per feature, as the models were trained ("left"/"right" are the subject's).
OVAL = (10, 200, 10)
LEFT_EYE = (10, 200, 180)
LEFT_EYEBROW = (10, 220, 180)
RIGHT_EYE = (180, 200, 10)
RIGHT_EYEBROW = (180, 220, 10)
LIPS = (10, 180, 10)
LEFT_PUPIL = (10, 200, 250)
RIGHT_PUPIL = (250, 200, 10)
# Landmark index of each pupil centre in the refined (478-point) mesh.
PUPILS = {468: RIGHT_PUPIL, 473: LEFT_PUPIL}


def _feature_colours(face_mesh) -> dict[tuple[int, int], tuple[int, int, int]]:
    """Connection -> colour, in drawing order (later features win where they share a segment)."""
    colours: dict[tuple[int, int], tuple[int, int, int]] = {}
    for connections, colour in (
        (face_mesh.FACEMESH_FACE_OVAL, OVAL),
        (face_mesh.FACEMESH_LEFT_EYE, LEFT_EYE),
        (face_mesh.FACEMESH_LEFT_EYEBROW, LEFT_EYEBROW),
        (face_mesh.FACEMESH_RIGHT_EYE, RIGHT_EYE),
        (face_mesh.FACEMESH_RIGHT_EYEBROW, RIGHT_EYEBROW),
        (face_mesh.FACEMESH_LIPS, LIPS),
    ):
        for edge in sorted(connections):
            colours[edge] = colour
    return colours


def detect_face_meshes(image_rgb: np.ndarray, max_faces: int, min_confidence: float) -> list[np.ndarray]:
    """Normalised (x, y) landmarks, one 478x2 array per face found (up to `max_faces`)."""
    mp = solutions("mediapipe_face")
    with mp.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=int(max_faces), refine_landmarks=True,
                               min_detection_confidence=float(min_confidence)) as mesh:
        found = mesh.process(image_rgb).multi_face_landmarks or []
    return [np.array([(p.x, p.y) for p in face.landmark], dtype=np.float64) for face in found]


def _big_enough(landmarks: np.ndarray, height: int, width: int) -> bool:
    extent = landmarks.max(axis=0) - landmarks.min(axis=0)
    return min(extent[0] * width, extent[1] * height) >= MIN_FACE_PIXELS


def _to_pixel(point: np.ndarray, height: int, width: int) -> tuple[int, int] | None:
    x, y = float(point[0]), float(point[1])
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
        return None
    return min(int(np.floor(x * width)), width - 1), min(int(np.floor(y * height)), height - 1)


def draw_face_mesh(canvas: np.ndarray, landmarks: np.ndarray, colours) -> None:
    height, width = canvas.shape[:2]
    for (start, end), colour in colours.items():
        a, b = _to_pixel(landmarks[start], height, width), _to_pixel(landmarks[end], height, width)
        if a is not None and b is not None:
            cv2.line(canvas, a, b, colour, LINE_THICKNESS)
    for index, colour in PUPILS.items():
        if index >= len(landmarks):
            continue
        x, y = landmarks[index]
        if 0.0 <= x < 1.0 and 0.0 <= y < 1.0:
            px, py = int(width * x), int(height * y)
            canvas[max(0, py - PUPIL_HALF_WIDTH):py + PUPIL_HALF_WIDTH,
                   max(0, px - PUPIL_HALF_WIDTH):px + PUPIL_HALF_WIDTH] = colour


def mediapipe_face(image: np.ndarray, resolution: float, max_faces: float, min_confidence: float) -> np.ndarray:
    """Black map at processing resolution with up to `max_faces` face meshes whose detection confidence is
    at least `min_confidence`; black if there is none."""
    img = resize_short_side(hwc3(image), resolution)
    height, width = img.shape[:2]
    canvas = np.zeros_like(img)
    faces = [f for f in detect_face_meshes(img, int(max_faces), min_confidence) if _big_enough(f, height, width)]
    if faces:
        colours = _feature_colours(solutions("mediapipe_face").face_mesh)
        for landmarks in faces:
            draw_face_mesh(canvas, landmarks, colours)
    return canvas
