"""OpenPose keypoints as ControlNet uses them, and their JSON form (the reference's `poses` / PoseData).

A person is 18 body points in OpenPose (COCO-18) order, optionally 21 points per hand and 70 face points.
Points are (x, y) normalised to the canvas (0..1) or None when not detected. The JSON follows OpenPose's
output format: flat [x, y, confidence] triplets, a missing point written as 0, 0, 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lib_controlnet.errors import InputError

Point = tuple[float, float]
Points = list[Point | None]

# Coordinates are pixels or fractions of the canvas (8192 px at most): anything beyond this is no position.
MAX_COORDINATE = 1e6
BODY_POINTS = 18
HAND_POINTS = 21
FACE_POINTS = 70

BODY_NAMES = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
              "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
              "right_eye", "left_eye", "right_ear", "left_ear")


@dataclass
class PersonPose:
    body: Points
    left_hand: Points | None = None
    right_hand: Points | None = None
    face: Points | None = None


def _flatten(points: Points | None) -> list[float] | None:
    if not points:
        return None
    flat: list[float] = []
    for point in points:
        flat.extend((float(point[0]), float(point[1]), 1.0) if point is not None else (0.0, 0.0, 0.0))
    return flat


def encode_pose_json(people: list[PersonPose], height: int, width: int, animals: list[Points] | None = None
                     ) -> dict:
    """The dict the reference returns in `poses` (and passes to its pose editor); `animals` are AP-10K
    skeletons (17 points each), flattened like a person's body."""
    return {
        "people": [
            {
                "pose_keypoints_2d": _flatten(person.body),
                "face_keypoints_2d": _flatten(person.face),
                "hand_left_keypoints_2d": _flatten(person.left_hand),
                "hand_right_keypoints_2d": _flatten(person.right_hand),
            }
            for person in people
        ],
        "animals": [_flatten(animal) for animal in animals or []],
        "canvas_height": int(height),
        "canvas_width": int(width),
    }


def _unflatten(values, field: str) -> Points | None:
    if not values:
        return None
    if len(values) % 3 != 0:
        raise InputError(f"keypoints must be [x, y, confidence] triplets, got {len(values)} numbers", field=field)
    numbers = [float(v) for v in values]
    bad = next((i for i, v in enumerate(numbers) if not (math.isfinite(v) and abs(v) <= MAX_COORDINATE)), None)
    if bad is not None:  # OpenCV draws at int32 pixel positions: NaN, inf or 1e300 would fail inside it
        raise InputError(f"keypoint value {bad} is {numbers[bad]!r}; expected a finite number within "
                         f"±{MAX_COORDINATE:g}", field=field)
    # Confidence 0 marks a missing point (our own output and OpenPose's). The reference drops everything
    # below 1.0, which throws away every point of real OpenPose output (confidences 0..1); we keep them.
    return [(numbers[i], numbers[i + 1]) if numbers[i + 2] > 0 else None for i in range(0, len(numbers), 3)]


def decode_pose_json(data: dict, field: str = "pose") -> tuple[list[PersonPose], int, int]:
    """(people, canvas height, canvas width) from an OpenPose-format dict."""
    try:
        height, width = int(data["canvas_height"]), int(data["canvas_width"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError("canvas_height and canvas_width must be integers", field=field) from exc
    if height <= 0 or width <= 0:
        raise InputError(f"canvas size must be positive, got {width}x{height}", field=field)
    people = []
    for index, person in enumerate(data.get("people") or []):
        where = f"{field}.people[{index}]"
        body = _unflatten(person.get("pose_keypoints_2d"), f"{where}.pose_keypoints_2d") or []
        people.append(PersonPose(
            body=body,
            left_hand=_unflatten(person.get("hand_left_keypoints_2d"), f"{where}.hand_left_keypoints_2d"),
            right_hand=_unflatten(person.get("hand_right_keypoints_2d"), f"{where}.hand_right_keypoints_2d"),
            face=_unflatten(person.get("face_keypoints_2d"), f"{where}.face_keypoints_2d"),
        ))
    return people, height, width
