"""mediapipe_face and the mediapipe OpenPose family on real photos (models from the mediapipe wheel)."""

import sys
import types

import numpy as np
import pytest

from annotator import mediapipe_face as face_module
from annotator import mediapipe_pose
from annotator.mediapipe_face import LIPS, OVAL, mediapipe_face
from annotator.mediapipe_loader import solutions
from annotator.mediapipe_openpose import mediapipe_openpose
from annotator.openpose_draw import BODY_COLOURS
from lib_controlnet.errors import MissingDependencyError

pytest.importorskip("mediapipe")


def _face_box(image):
    """Bounding box (x0, y0, x1, y1) in pixels of the face mediapipe's separate face *detector* finds."""
    mp = solutions("test")
    with mp.face_detection.FaceDetection(model_selection=1) as detector:
        found = detector.process(image).detections
    box = found[0].location_data.relative_bounding_box
    h, w = image.shape[:2]
    return box.xmin * w, box.ymin * h, (box.xmin + box.width) * w, (box.ymin + box.height) * h


def _colour_mask(canvas, colour):
    return (canvas == np.array(colour, np.uint8)).all(axis=2)


def test_face_mesh_is_drawn_on_the_face_only(astronaut_rgb):
    out = mediapipe_face(astronaut_rgb, 512, 1, 0.5)
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8
    ys, xs = np.nonzero(out.any(axis=2))
    x0, y0, x1, y1 = _face_box(astronaut_rgb)
    pad = 0.25 * (x1 - x0)
    inside = (xs > x0 - pad) & (xs < x1 + pad) & (ys > y0 - pad) & (ys < y1 + pad)
    assert len(xs) > 1500 and inside.all()
    # The reference's feature colours: green face oval around, lips below the middle of the face.
    oval, lips = _colour_mask(out, OVAL), _colour_mask(out, LIPS)
    assert oval.sum() > 300 and lips.sum() > 100
    assert np.nonzero(lips)[0].mean() > np.nonzero(oval)[0].mean()


def test_no_face_no_mesh(chelsea_rgb):
    assert not mediapipe_face(chelsea_rgb, 512, 1, 0.5).any()


def test_max_faces_and_min_confidence_sliders(two_portraits_rgb):
    def faces_drawn(max_faces, confidence):
        canvas = mediapipe_face(two_portraits_rgb, 300, max_faces, confidence)
        halves = canvas[:, :300].any(), canvas[:, 300:].any()
        return sum(halves)

    assert faces_drawn(1, 0.5) == 1
    assert faces_drawn(2, 0.5) == 2
    assert faces_drawn(10, 0.5) == 2
    assert faces_drawn(2, 1.0) == 0  # no detection is ever that sure


def test_small_faces_are_not_drawn(astronaut_rgb):
    # At 128 px the face is about 40 px wide, under the reference's 64 px minimum.
    assert not mediapipe_face(astronaut_rgb, 128, 1, 0.5).any()
    assert mediapipe_face(astronaut_rgb, 384, 1, 0.5).any()


@pytest.fixture(scope="module")
def astronaut_pose(astronaut_rgb):
    return mediapipe_openpose(astronaut_rgb, 512, body=True, hands=True, face=True)


def test_openpose_skeleton_lies_on_the_person(astronaut_pose, astronaut_rgb):
    canvas, pose = astronaut_pose
    assert canvas.shape == (512, 512, 3)
    assert pose["canvas_width"] == 512 and pose["canvas_height"] == 512 and len(pose["people"]) == 1
    person = pose["people"][0]
    body = np.array(person["pose_keypoints_2d"]).reshape(18, 3)
    seen = body[:, 2] > 0
    assert seen[[0, 1, 2, 5, 14, 15, 16, 17]].all()  # head and shoulders are visible in this portrait
    x0, y0, x1, y1 = _face_box(astronaut_rgb)
    nose = body[0, :2] * 512
    assert x0 < nose[0] < x1 and y0 < nose[1] < y1
    # Subject's right shoulder is on the image's left; shoulders below the face; neck between them.
    assert body[2, 0] < body[1, 0] < body[5, 0] and body[2, 1] * 512 > y1 and body[5, 1] * 512 > y1
    assert body[14, 0] < body[15, 0]  # right eye left of left eye, as seen
    # The joints are drawn in OpenPose's colours where the JSON puts them (the nose is under the face dots).
    for index in (1, 2, 5):
        x, y = (body[index, :2] * 512).astype(int)
        assert tuple(canvas[y, x]) == BODY_COLOURS[index]
    # 70 face points, all on the face.
    face = np.array(person["face_keypoints_2d"]).reshape(70, 3)
    assert (face[:, 2] > 0).all()
    fx, fy = face[:, 0] * 512, face[:, 1] * 512
    assert (fx > x0 - 10).all() and (fx < x1 + 10).all() and (fy > y0 - 10).all() and (fy < y1 + 25).all()
    assert face[36:42, 0].mean() < face[42:48, 0].mean()  # right eye (36-41) on the image's left
    assert face[48:60, 1].mean() > face[30, 1]  # mouth below the nose tip


def test_body_points_follow_the_stated_mapping(astronaut_rgb, astronaut_pose):
    mp = solutions("test")
    with mp.holistic.Holistic(static_image_mode=True, model_complexity=1, refine_face_landmarks=True) as h:
        landmarks = h.process(astronaut_rgb).pose_landmarks.landmark
    body = np.array(astronaut_pose[1]["people"][0]["pose_keypoints_2d"]).reshape(18, 3)
    for openpose_index, mp_index in [(0, 0), (2, 12), (5, 11), (14, 5), (15, 2), (16, 8), (17, 7)]:
        assert body[openpose_index, :2] == pytest.approx((landmarks[mp_index].x, landmarks[mp_index].y))
    neck = ((landmarks[11].x + landmarks[12].x) / 2, (landmarks[11].y + landmarks[12].y) / 2)
    assert body[1, :2] == pytest.approx(neck)
    # Landmarks mediapipe itself is unsure of (here the wrists, hidden behind the helmet) are left out.
    assert landmarks[15].visibility < 0.5 and body[7, 2] == 0


def test_variants_choose_what_is_drawn_and_reported(grace_hopper_rgb):
    full, full_pose = mediapipe_openpose(grace_hopper_rgb, 512, body=True, hands=True, face=True)
    body_only, body_pose = mediapipe_openpose(grace_hopper_rgb, 512, body=True, hands=False, face=False)
    face_only, face_pose = mediapipe_openpose(grace_hopper_rgb, 512, body=False, hands=False, face=True)
    assert full.shape == (600, 512, 3)  # short side 512
    white = lambda c: _colour_mask(c, (255, 255, 255)).sum()  # noqa: E731 - face points are white
    assert white(full) > 100 and white(body_only) == 0 and white(face_only) > 100
    neck = _colour_mask(full, BODY_COLOURS[1]).sum()
    assert neck > 0 and _colour_mask(face_only, BODY_COLOURS[1]).sum() == 0
    assert body_pose["people"][0]["face_keypoints_2d"] is None
    assert face_pose["people"][0]["pose_keypoints_2d"] == full_pose["people"][0]["pose_keypoints_2d"]
    # No hand is visible in either photo: mediapipe finds none and the JSON says so.
    assert full_pose["people"][0]["hand_left_keypoints_2d"] is None


def test_no_person_gives_an_empty_map_and_no_people(chelsea_rgb):
    canvas, pose = mediapipe_openpose(chelsea_rgb, 512, body=True, hands=True, face=True)
    assert not canvas.any() and pose["people"] == []


def test_missing_mediapipe_is_a_clear_501(monkeypatch, astronaut_rgb):
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # makes `import mediapipe` raise ImportError
    with pytest.raises(MissingDependencyError) as info:
        mediapipe_face(astronaut_rgb, 512, 1, 0.5)
    assert info.value.status_code == 501 and "mediapipe==0.10.9" in info.value.message
    with pytest.raises(MissingDependencyError):
        mediapipe_pose.detect_people(astronaut_rgb)


def test_mediapipe_without_solutions_is_a_clear_501(monkeypatch, astronaut_rgb):
    monkeypatch.setitem(sys.modules, "mediapipe", types.SimpleNamespace(__version__="1.2.2"))
    with pytest.raises(MissingDependencyError) as info:
        face_module.mediapipe_face(astronaut_rgb, 512, 1, 0.5)
    assert "1.2.2" in info.value.message and "solutions" in info.value.message
