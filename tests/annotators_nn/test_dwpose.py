"""dw_openpose_full and animal_openpose on onnxruntime, with ONNX stand-ins of the published files' signatures
(tests/annotators_nn/dwpose_models.py): detections and keypoints are designed, so the expected pixels below are
worked out by hand from the reference's formulas (letterbox, YOLOX grid decoding, the 1.25 box padding and
aspect fix, the affine crop, SimCC argmax / 2), not by calling our code."""

import sys

import numpy as np
import pytest
from dwpose_models import detector, detector_raw, pose_model
from nn_test_helpers import PreloadedModels

from annotator.neural import dwpose, onnx_models
from annotator.neural.runtime import AnnotatorModels
from lib_controlnet.errors import MissingDependencyError, ModelFileError, NotFoundError

pytest.importorskip("onnxruntime")

HEIGHT, WIDTH = 256, 320  # the photo fixture; the letterbox scale is min(640/256, 640/320) = 2


def _simcc(points: dict[int, tuple[float, float]], count: int, input_size) -> tuple[np.ndarray, np.ndarray]:
    """SimCC rows peaking (value 1) at input pixel (x, y) of each listed keypoint; zero rows elsewhere."""
    simcc_x = np.zeros((count, input_size[0] * 2), np.float32)
    simcc_y = np.zeros((count, input_size[1] * 2), np.float32)
    for k, (x, y) in points.items():
        simcc_x[k, int(x * 2)] = 1.0
        simcc_y[k, int(y * 2)] = 1.0
    return simcc_x, simcc_y


def _load(spec, data: bytes, tmp_path):
    path = tmp_path / spec.weight.name
    path.write_bytes(data)
    return spec.load(path)


# One person box in the image: (100, 40)-(180, 200), i.e. (200, 80)-(360, 400) in the 640 x 640 letterbox.
# Grown by 1.25 to 100 x 200, then widened to 288:384 -> the crop is 150 x 200 around (140, 120): input pixel
# (x, y) of the 288 x 384 model is image pixel (65 + x * 150 / 288, 20 + y * 200 / 384).
BOX = (200, 80, 360, 400)
WHOLEBODY_POINTS = {0: (144, 96), 5: (100, 150), 6: (188, 150), 9: (72, 288), 23 + 30: (144, 120),
                    91: (60, 300), 112: (228, 300)}


def _image_px(x, y):
    return 65 + x * 150 / 288, 20 + y * 200 / 384


@pytest.fixture(scope="module")
def wholebody_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dwpose")
    det = _load(dwpose.DETECTOR, detector(detector_raw([BOX], [0])), folder)
    pose = _load(dwpose.WHOLEBODY, pose_model(*_simcc(WHOLEBODY_POINTS, 133, dwpose.WHOLEBODY_INPUT),
                                              dwpose.WHOLEBODY_INPUT), folder)
    return PreloadedModels({"yolox_l.onnx": det, "dw-ll_ucoco_384.onnx": pose})


def test_detector_box_comes_back_in_image_pixels(photo, wholebody_models):
    boxes = dwpose.detect(wholebody_models.nets["yolox_l.onnx"], photo, dwpose.PERSON)
    assert boxes.shape == (1, 4) and np.allclose(boxes[0], (100, 40, 180, 200), atol=1e-2)
    assert dwpose.detect(wholebody_models.nets["yolox_l.onnx"], photo, dwpose.ANIMALS).shape == (0, 4)


def test_dw_openpose_full_places_each_keypoint_where_the_formulas_say(photo, wholebody_models):
    drawn, pose = dwpose.dw_openpose_full(photo, 256, models=wholebody_models)
    assert drawn.shape == (HEIGHT, WIDTH, 3) and drawn.any()
    assert (pose["canvas_height"], pose["canvas_width"]) == (HEIGHT, WIDTH) and len(pose["people"]) == 1
    person = pose["people"][0]
    body = np.array(person["pose_keypoints_2d"]).reshape(18, 3)
    # OpenPose body order: nose 0, neck 1 (between the shoulders), right shoulder 2 (COCO 6), left shoulder 5
    # (COCO 5), left wrist 7 (COCO 9); every other body point is missing (0, 0, 0).
    expected = {0: _image_px(144, 96), 2: _image_px(188, 150), 5: _image_px(100, 150), 7: _image_px(72, 288),
                1: _image_px(144, 150)}
    for index in range(18):
        if index in expected:
            assert np.allclose(body[index], (*expected[index], 1.0), atol=1e-2), index
        else:
            assert body[index].tolist() == [0, 0, 0], index
    face = np.array(person["face_keypoints_2d"]).reshape(70, 3)
    assert np.allclose(face[30], (*_image_px(144, 120), 1), atol=1e-2) and face[[0, 68, 69], 2].tolist() == [0, 0, 0]
    left = np.array(person["hand_left_keypoints_2d"]).reshape(21, 3)
    right = np.array(person["hand_right_keypoints_2d"]).reshape(21, 3)
    assert np.allclose(left[0], (*_image_px(60, 300), 1), atol=1e-2) and left[1:, 2].sum() == 0
    assert np.allclose(right[0], (*_image_px(228, 300), 1), atol=1e-2)
    nose = tuple(int(v) for v in _image_px(144, 96))
    assert tuple(drawn[nose[1], nose[0]]) == (255, 0, 0)  # the nose disc in OpenPose's first colour


def test_no_detection_at_all_means_no_people_but_weak_boxes_mean_the_whole_image(photo, tmp_path):
    """The reference's two cases: nothing over 0.1 -> no pose; boxes over 0.1 but none over 0.3 -> the pose
    model runs on the whole image."""
    pose = _load(dwpose.WHOLEBODY, pose_model(*_simcc({0: (144, 192)}, 133, dwpose.WHOLEBODY_INPUT),
                                              dwpose.WHOLEBODY_INPUT), tmp_path)
    for folder in ("none", "weak"):
        (tmp_path / folder).mkdir()
    nothing = _load(dwpose.DETECTOR, detector(detector_raw([], [])), tmp_path / "none")
    weak = _load(dwpose.DETECTOR, detector(detector_raw([BOX], [0], score=0.5)), tmp_path / "weak")  # 0.25
    _, empty = dwpose.dw_openpose_full(photo, 256, models=PreloadedModels({"yolox_l.onnx": nothing,
                                                                           "dw-ll_ucoco_384.onnx": pose}))
    assert empty["people"] == []
    _, whole = dwpose.dw_openpose_full(photo, 256, models=PreloadedModels({"yolox_l.onnx": weak,
                                                                           "dw-ll_ucoco_384.onnx": pose}))
    # The whole 320 x 256 image is the box: grown to 400 x 320, then 400 x 533.3 around (160, 128); the input
    # centre (144, 192) is the image centre.
    assert np.allclose(whole["people"][0]["pose_keypoints_2d"][:3], (160, 128, 1), atol=1e-2)


def test_animal_openpose_draws_every_keypoint_and_lists_the_animal(photo, tmp_path):
    # A dog (COCO class 16) at the same box; AP-10K's 17 points, the model input 256 x 256. The box grown to
    # 100 x 200 is made square: 200 x 200 around (140, 120), so input (x, y) is image (40 + x * 200 / 256, ...).
    points = {k: (20 + 13 * (k * 7 % 17), 20 + 13 * (k * 11 % 17)) for k in range(17)}
    det = _load(dwpose.DETECTOR, detector(detector_raw([BOX], [16])), tmp_path)
    pose = _load(dwpose.ANIMAL, pose_model(*_simcc(points, 17, dwpose.ANIMAL_INPUT), dwpose.ANIMAL_INPUT), tmp_path)
    models = PreloadedModels({"yolox_l.onnx": det, dwpose.ANIMAL_FILE: pose})
    drawn, result = dwpose.animal_openpose(photo, 256, models=models)
    assert result["people"] == [] and len(result["animals"]) == 1
    animal = np.array(result["animals"][0]).reshape(17, 3)
    expected = np.array([(40 + x * 200 / 256, 20 + y * 200 / 256, 1) for x, y in points.values()])
    assert np.allclose(animal, expected, atol=1e-2)
    assert drawn.shape == (HEIGHT, WIDTH, 3)
    assert (drawn == 255).all(axis=2).any()  # the first bone (between the eyes) is the white one
    # A person box alone gives no animal.
    (tmp_path / "p").mkdir()
    person = _load(dwpose.DETECTOR, detector(detector_raw([BOX], [0])), tmp_path / "p")
    _, none = dwpose.animal_openpose(photo, 256, models=PreloadedModels({"yolox_l.onnx": person,
                                                                        dwpose.ANIMAL_FILE: pose}))
    assert none["animals"] == []


def test_the_onnx_graphs_compute_what_they_encode(tmp_path):
    """The hand-written protobuf is parsed by onnxruntime into the graph we meant: random weights, the image
    term large, compared with the same computation in NumPy."""
    raw = np.zeros((dwpose._anchors(), 85), np.float32)
    net = _load(dwpose.DETECTOR, detector(raw, seed=3, scale=1.0), tmp_path)
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 640, 640)).astype(np.float32)
    out = net(x)[0]
    rng = np.random.default_rng(3)
    weight = rng.normal(0, 1, (84, 3, 64, 64)).astype(np.float32) / 64
    pooled = np.einsum("ocij,cij->o", weight, x[0].reshape(3, 10, 64, 10, 64).mean(axis=(1, 3)))
    expected = np.broadcast_to(pooled[:, None, None], (84, 100, 85)).reshape(1, 8400, 85)
    assert out.shape == (1, 8400, 85) and np.allclose(out, expected, rtol=1e-4, atol=1e-2)


def test_signature_checks_and_the_missing_file_and_package_errors(tmp_path, monkeypatch):
    (tmp_path / "yolox_l.onnx").write_bytes(pose_model(*_simcc({}, 17, dwpose.ANIMAL_INPUT), dwpose.ANIMAL_INPUT))
    with pytest.raises(ModelFileError, match=r"yolox_l.onnx does not hold the YOLOX-L detector network"):
        AnnotatorModels(device="cpu", folder=tmp_path).get(dwpose.DETECTOR)
    (tmp_path / "dw-ll_ucoco_384.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ModelFileError, match="not a readable ONNX model"):
        AnnotatorModels(device="cpu", folder=tmp_path).get(dwpose.WHOLEBODY)
    with pytest.raises(NotFoundError) as info:
        AnnotatorModels(device="cpu", folder=tmp_path / "empty").get(dwpose.ANIMAL)
    assert dwpose.ANIMAL_FILE in str(info.value) and "qinglong_controlnet-lllite/blob/main/Annotators/" in str(
        info.value)

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # "import onnxruntime" now fails
    with pytest.raises(MissingDependencyError) as info:
        dwpose.dw_openpose_full(np.zeros((64, 64, 3), np.uint8), 64)
    assert info.value.status_code == 501 and f"pip install {onnx_models.ONNXRUNTIME}" in str(info.value)


def test_nms_is_per_class_with_inclusive_areas():
    boxes = np.array([[0, 0, 99, 99], [10, 0, 109, 99], [0, 0, 99, 99], [300, 300, 310, 310]], np.float64)
    scores = np.zeros((4, 80))
    scores[0, 0], scores[1, 0], scores[2, 16], scores[3, 0] = 0.9, 0.8, 0.7, 0.2
    # Boxes 0 and 1 overlap by 90 x 100 of 100 x 100 each: IoU 0.818 > 0.45, so 1 goes; the dog (class 16) on
    # top of the person stays; box 3 passes NMS (> 0.1) but not the final 0.3.
    assert dwpose.select_boxes(boxes, scores, dwpose.PERSON).tolist() == [[0, 0, 99, 99]]
    assert dwpose.select_boxes(boxes, scores, dwpose.ANIMALS).tolist() == [[0, 0, 99, 99]]
    assert dwpose.nms(boxes[:2], np.array([0.8, 0.9])) == [1]
    # Two boxes side by side: inter 10 x 100 with the +1 rule (x 90..99), IoU 1000 / 19000 < 0.45: both stay.
    assert sorted(dwpose.nms(np.array([[0, 0, 99, 99], [90, 0, 189, 99]], float), np.array([0.5, 0.6]))) == [0, 1]
    assert dwpose.select_boxes(boxes, np.zeros((4, 80)), dwpose.PERSON) is None
