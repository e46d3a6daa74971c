"""The mediapipe_openpose* preprocessors: an OpenPose map and its pose JSON from mediapipe Holistic."""

from __future__ import annotations

import numpy as np

from .mediapipe_pose import detect_people
from .openpose_draw import draw_poses
from .openpose_format import encode_pose_json
from .util import hwc3, resize_short_side


def mediapipe_openpose(image: np.ndarray, resolution: float, *, body: bool, hands: bool,
                       face: bool) -> tuple[np.ndarray, dict]:
    """(map, pose JSON) at processing resolution. As with the reference's openpose / _hand / _face /
    _faceonly / _full, `hands` and `face` choose which parts are kept (in the map and the JSON) and `body`
    only whether the body is drawn: the JSON always has the body points."""
    img = resize_short_side(hwc3(image), resolution)
    height, width = img.shape[:2]
    people = detect_people(img)
    if not hands:
        for person in people:
            person.left_hand = person.right_hand = None
    if not face:
        for person in people:
            person.face = None
    drawn = draw_poses(people, height, width, body=body, hands=hands, face=face)
    return drawn, encode_pose_json(people, height, width)
