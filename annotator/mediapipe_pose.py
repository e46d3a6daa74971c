"""Body, hands and face from mediapipe Holistic, as OpenPose keypoints: the openpose ControlNets then work
with no downloaded weights (mediapipe's wheel ships the models).

Keypoint mapping (all "left"/"right" are the subject's, in mediapipe and in OpenPose alike):

Body, OpenPose COCO-18 index <- mediapipe Pose landmark:
    0 nose <- 0 nose              1 neck <- midpoint of 11 and 12 (shoulders), only if both are seen
    2 right shoulder <- 12        3 right elbow <- 14        4 right wrist <- 16
    5 left shoulder <- 11         6 left elbow <- 13         7 left wrist <- 15
    8 right hip <- 24             9 right knee <- 26         10 right ankle <- 28
    11 left hip <- 23             12 left knee <- 25         13 left ankle <- 27
    14 right eye <- 5             15 left eye <- 2           16 right ear <- 8          17 left ear <- 7
A body point counts as seen when its visibility is at least 0.5 and it lies inside the image.

Hands: mediapipe's 21 hand landmarks are in OpenPose's hand order already (wrist, then thumb, index,
middle, ring, little finger, each base to tip), so they map one to one. Holistic assigns hands to the
subject's left/right through the pose's wrists.

Face, OpenPose-70 index <- face-mesh landmark (68 iBUG points, then the two pupils):
    jaw 0-16 (subject's right ear level, round the chin, to the left) <- FACE_70_FROM_MESH[0:17]
    right brow 17-21, left brow 22-26, nose bridge 27-30, nostrils 31-35,
    right eye 36-41, left eye 42-47, outer lips 48-59, inner lips 60-67, right pupil 68, left pupil 69.
Only mediapipe's single most prominent person is found (Holistic tracks one person).
"""

from __future__ import annotations

import numpy as np

from .mediapipe_loader import solutions
from .openpose_format import BODY_POINTS, FACE_POINTS, PersonPose, Point

NECK = -1  # marker in the table below: computed from both shoulders
BODY_FROM_POSE = (0, NECK, 12, 14, 16, 11, 13, 15, 24, 26, 28, 23, 25, 27, 5, 2, 8, 7)
LEFT_SHOULDER, RIGHT_SHOULDER = 11, 12
MIN_VISIBILITY = 0.5

FACE_70_FROM_MESH = (
    234, 93, 132, 58, 172, 136, 150, 176, 152, 400, 379, 365, 397, 288, 361, 323, 454,  # jaw
    70, 63, 105, 66, 107,  # right eyebrow, outer to inner
    336, 296, 334, 293, 300,  # left eyebrow, inner to outer
    168, 197, 5, 4,  # nose bridge, top to tip
    98, 97, 2, 326, 327,  # nostrils, subject's right to left
    33, 160, 158, 133, 153, 144,  # right eye: outer corner, upper lid, inner corner, lower lid
    362, 385, 387, 263, 373, 380,  # left eye: inner corner, upper lid, outer corner, lower lid
    61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91,  # outer lips from the right corner, clockwise
    78, 81, 13, 311, 308, 402, 14, 178,  # inner lips
    468, 473,  # pupils (refined mesh only)
)
assert len(BODY_FROM_POSE) == BODY_POINTS and len(FACE_70_FROM_MESH) == FACE_POINTS


def _inside(x: float, y: float) -> bool:
    return 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0


def body_from_pose(landmarks) -> list[Point | None]:
    """18 OpenPose body points from mediapipe's 33 pose landmarks (objects with x, y, visibility)."""
    def seen(index: int) -> Point | None:
        lm = landmarks[index]
        return (lm.x, lm.y) if lm.visibility >= MIN_VISIBILITY and _inside(lm.x, lm.y) else None

    body: list[Point | None] = []
    for source in BODY_FROM_POSE:
        if source == NECK:
            left, right = seen(LEFT_SHOULDER), seen(RIGHT_SHOULDER)
            body.append(None if left is None or right is None
                        else ((left[0] + right[0]) / 2, (left[1] + right[1]) / 2))
        else:
            body.append(seen(source))
    return body


def hand_from_landmarks(landmarks) -> list[Point | None] | None:
    if landmarks is None:
        return None
    return [(lm.x, lm.y) if _inside(lm.x, lm.y) else None for lm in landmarks.landmark]


def face_from_mesh(landmarks) -> list[Point | None] | None:
    if landmarks is None:
        return None
    points = landmarks.landmark
    return [(points[i].x, points[i].y) if i < len(points) and _inside(points[i].x, points[i].y) else None
            for i in FACE_70_FROM_MESH]


def detect_people(image_rgb: np.ndarray) -> list[PersonPose]:
    """The person mediapipe Holistic finds, as OpenPose keypoints (an empty list if none)."""
    mp = solutions("the mediapipe OpenPose preprocessors")
    # model_complexity=1 is the only pose model inside the wheel; 0 and 2 would try to download.
    with mp.holistic.Holistic(static_image_mode=True, model_complexity=1, refine_face_landmarks=True) as holistic:
        found = holistic.process(image_rgb)
    if found.pose_landmarks is None and found.face_landmarks is None:
        return []
    body = body_from_pose(found.pose_landmarks.landmark) if found.pose_landmarks is not None else [None] * BODY_POINTS
    return [PersonPose(
        body=body,
        left_hand=hand_from_landmarks(found.left_hand_landmarks),
        right_hand=hand_from_landmarks(found.right_hand_landmarks),
        face=face_from_mesh(found.face_landmarks),
    )]
