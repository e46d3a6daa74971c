"""OpenPose drawing (colour convention) and the pose JSON format, on keypoints we place ourselves."""

import numpy as np
import pytest

from annotator.openpose_draw import BODY_COLOURS, BODY_LIMBS, draw_poses
from annotator.openpose_format import PersonPose, decode_pose_json, encode_pose_json
from lib_controlnet.errors import InputError

# A standing figure on a 256 x 256 canvas, normalised (x, y) in OpenPose order, spread so that discs
# (radius 4) do not overlap.
FIGURE = [(0.50, 0.14), (0.50, 0.28), (0.38, 0.28), (0.30, 0.42), (0.25, 0.56), (0.62, 0.28), (0.70, 0.42),
          (0.75, 0.56), (0.42, 0.58), (0.41, 0.75), (0.40, 0.92), (0.58, 0.58), (0.59, 0.75), (0.60, 0.92),
          (0.46, 0.10), (0.54, 0.10), (0.42, 0.13), (0.58, 0.13)]


def _at(canvas, point):
    return tuple(int(v) for v in canvas[int(point[1] * canvas.shape[0]), int(point[0] * canvas.shape[1])])


def test_body_joints_in_full_colour_and_limbs_at_sixty_percent():
    canvas = draw_poses([PersonPose(body=list(FIGURE))], 256, 256)
    for index, point in enumerate(FIGURE):
        assert _at(canvas, point) == BODY_COLOURS[index], index
    # Midpoints of two long limbs (right upper arm, left thigh) carry the limb colour at 60 %.
    for limb_index in (2, 10):
        a, b = BODY_LIMBS[limb_index]
        mid = ((FIGURE[a][0] + FIGURE[b][0]) / 2, (FIGURE[a][1] + FIGURE[b][1]) / 2)
        assert _at(canvas, mid) == tuple(int(c * 0.6) for c in BODY_COLOURS[limb_index])
    assert canvas[250, 5].sum() == 0  # background stays black


def test_missing_joints_drop_their_limbs():
    body = list(FIGURE)
    body[3] = None  # right elbow
    canvas = draw_poses([PersonPose(body=body)], 256, 256)
    shoulder, wrist = FIGURE[2], FIGURE[4]
    assert _at(canvas, ((shoulder[0] + FIGURE[3][0]) / 2, (shoulder[1] + FIGURE[3][1]) / 2)) == (0, 0, 0)
    assert _at(canvas, wrist) == BODY_COLOURS[4]


def test_pixel_and_normalised_coordinates_draw_the_same():
    pixels = [(x * 256, y * 256) for x, y in FIGURE]
    assert np.array_equal(draw_poses([PersonPose(body=pixels)], 256, 256),
                          draw_poses([PersonPose(body=list(FIGURE))], 256, 256))


def test_hands_and_face_drawing():
    hand = [(0.5 + 0.02 * (i % 5), 0.5 + 0.02 * (i // 5)) for i in range(21)]
    face = [(0.3 + 0.005 * i, 0.2) for i in range(70)]
    canvas = draw_poses([PersonPose(body=[None] * 18, left_hand=hand, face=face)], 512, 512)
    assert _at(canvas, hand[7]) == (0, 0, 255)  # hand joints are blue discs
    assert _at(canvas, face[10]) == (255, 255, 255)  # face points are white
    bodyless = draw_poses([PersonPose(body=list(FIGURE), left_hand=hand, face=face)], 512, 512, body=False)
    assert _at(bodyless, FIGURE[1]) == (0, 0, 0)


def test_pose_json_round_trip_and_missing_points():
    person = PersonPose(body=list(FIGURE[:17]) + [None], face=[(0.1, 0.2)] * 70)
    data = encode_pose_json([person], 300, 400)
    assert data["canvas_height"] == 300 and data["canvas_width"] == 400 and data["animals"] == []
    entry = data["people"][0]
    assert len(entry["pose_keypoints_2d"]) == 54 and entry["pose_keypoints_2d"][-3:] == [0.0, 0.0, 0.0]
    assert entry["hand_left_keypoints_2d"] is None and len(entry["face_keypoints_2d"]) == 210
    people, height, width = decode_pose_json(data)
    assert (height, width) == (300, 400)
    assert people[0].body[:17] == [pytest.approx(p) for p in FIGURE[:17]] and people[0].body[17] is None
    assert people[0].left_hand is None and len(people[0].face) == 70


def test_decode_keeps_openpose_confidences_below_one():
    data = {"people": [{"pose_keypoints_2d": [10, 20, 0.83, 0, 0, 0] + [0] * 48}],
            "canvas_height": 100, "canvas_width": 100}
    people, _, _ = decode_pose_json(data)
    assert people[0].body[0] == (10.0, 20.0) and people[0].body[1] is None


@pytest.mark.parametrize("bad", [
    {"people": [], "canvas_width": 10},
    {"people": [], "canvas_width": 0, "canvas_height": 10},
    {"people": [{"pose_keypoints_2d": [1, 2]}], "canvas_width": 10, "canvas_height": 10},
])
def test_decode_rejects_bad_pose_files(bad):
    with pytest.raises(InputError):
        decode_pose_json(bad)
