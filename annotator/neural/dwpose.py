"""dw_openpose_full and animal_openpose: a YOLOX-L person/animal detector, then a top-down RTMPose/DWPose
keypoint model on each box (the published ONNX files of yzd-v/DWPose and bdsqlsz/qinglong_controlnet-lllite),
decoded and drawn as OpenPose maps.

- Detection (yolox_l.onnx): the image letterboxed into 640 x 640 (scaled to fit, top-left, grey 114 around),
  raw 0..255 pixels in; per anchor (8400 over strides 8, 16, 32) box offsets, objectness and 80 class scores.
  Boxes are decoded on the anchor grid, scores are objectness x class, then class-wise NMS (IoU 0.45, score
  0.1) and boxes of the wanted classes scoring over 0.3 are kept.
- Pose: each box grown by 1.25 and to the model's aspect ratio, warped (bilinear) to 288 x 384 (whole body,
  133 COCO-WholeBody keypoints) or 256 x 256 (animal, 17 AP-10K keypoints), ImageNet-normalised RGB in; SimCC
  out: one distribution per keypoint along x and along y at twice the input resolution; a keypoint is the two
  argmaxes, its score the smaller of the two maxima.
- Whole body to OpenPose: a neck between the shoulders, the body reordered to OpenPose's 18, 21 points per
  hand, 68 face points plus the two eyes; a point scoring under 0.3 is missing.

Deliberate differences from the reference: it feeds the detector RGB, but YOLOX is trained on BGR (cv2-read
images), so we give it BGR (the pose models get RGB, as they are trained); each box is run on its own (batch 1,
so files exported with a fixed batch work too); we run on the unpadded image, where the reference runs on the
image padded to a multiple of 64. Keypoints are in pixels of the map, drawn and written to the pose JSON as
such (as the reference does for these two modules): a keypoint may lie outside the image, which normalised
coordinates could not tell apart from pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..openpose_draw import draw_animals, draw_poses
from ..openpose_format import PersonPose, encode_pose_json
from ..util import hwc3, resize_short_side
from .onnx_models import OnnxNet, OnnxSpec, onnxruntime
from .runtime import AnnotatorModels, default_models
from .weights import WeightFile

DWPOSE_REPO = "https://huggingface.co/yzd-v/DWPose"
ANIMAL_FILE = "rtmpose-m_simcc-ap10k_pt-aic-coco_210e-256x256-7a041aa1_20230206.onnx"

DETECTOR_SIZE = 640
STRIDES = (8, 16, 32)
COCO_CLASSES = 80
PAD_VALUE = 114
NMS_IOU = 0.45
MIN_DETECTION_SCORE = 0.1  # before NMS
MIN_BOX_SCORE = 0.3  # after NMS
PERSON = (0,)
ANIMALS = tuple(range(14, 24))  # COCO bird, cat, dog, horse, sheep, cow, elephant, bear, zebra, giraffe

BOX_PADDING = 1.25
SIMCC_SPLIT = 2.0
MEAN = np.array([123.675, 116.28, 103.53])
STD = np.array([58.395, 57.12, 57.375])
MIN_KEYPOINT_SCORE = 0.3

WHOLEBODY_INPUT = (288, 384)  # (width, height)
ANIMAL_INPUT = (256, 256)
WHOLEBODY_POINTS = 133
ANIMAL_POINTS = 17


def _anchors() -> int:
    return sum((DETECTOR_SIZE // s) ** 2 for s in STRIDES)


DETECTOR = OnnxSpec("YOLOX-L detector", WeightFile(("yolox_l.onnx",), "openpose", repo=DWPOSE_REPO),
                    inputs=[(None, 3, DETECTOR_SIZE, DETECTOR_SIZE)], outputs=[(None, _anchors(), 5 + COCO_CLASSES)])
WHOLEBODY = OnnxSpec(
    "DWPose whole-body keypoints", WeightFile(("dw-ll_ucoco_384.onnx",), "openpose", repo=DWPOSE_REPO),
    inputs=[(None, 3, WHOLEBODY_INPUT[1], WHOLEBODY_INPUT[0])],
    outputs=[(None, WHOLEBODY_POINTS, int(WHOLEBODY_INPUT[0] * SIMCC_SPLIT)),
             (None, WHOLEBODY_POINTS, int(WHOLEBODY_INPUT[1] * SIMCC_SPLIT))])
ANIMAL = OnnxSpec(
    "RTMPose AP-10K animal keypoints",
    WeightFile((ANIMAL_FILE,), "openpose",
               urls={ANIMAL_FILE: "https://huggingface.co/bdsqlsz/qinglong_controlnet-lllite/blob/main/Annotators/"
                                  + ANIMAL_FILE}),
    inputs=[(None, 3, ANIMAL_INPUT[1], ANIMAL_INPUT[0])],
    outputs=[(None, ANIMAL_POINTS, int(ANIMAL_INPUT[0] * SIMCC_SPLIT)),
             (None, ANIMAL_POINTS, int(ANIMAL_INPUT[1] * SIMCC_SPLIT))])


# --- detection ---------------------------------------------------------------------------------------------
def letterbox(img: np.ndarray, size: int = DETECTOR_SIZE) -> tuple[np.ndarray, float]:
    """(1x3xSxS float32 of 0..255, scale): scaled (bilinear) to fit, at the top left of a grey canvas."""
    scale = min(size / img.shape[0], size / img.shape[1])
    new_w, new_h = int(img.shape[1] * scale), int(img.shape[0] * scale)
    canvas = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], dtype=np.float32), scale


def decode_boxes(raw: np.ndarray, size: int = DETECTOR_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """YOLOX's grid decoding of one image's (anchors x 85) output: (anchors x 4 xyxy boxes in network pixels,
    anchors x 80 class scores = objectness x class probability)."""
    grids, strides = [], []
    for stride in STRIDES:
        side = size // stride
        ys, xs = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
        grids.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        strides.append(np.full((side * side, 1), stride))
    grid, stride = np.concatenate(grids), np.concatenate(strides)
    centre = (raw[:, :2] + grid) * stride
    extent = np.exp(raw[:, 2:4]) * stride
    boxes = np.concatenate([centre - extent / 2, centre + extent / 2], axis=1)
    return boxes, raw[:, 4:5] * raw[:, 5:]


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> list[int]:
    """Greedy NMS, highest score first, with the reference's inclusive (+1) box areas."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        inter = w * h
        order = rest[inter / (areas[best] + areas[rest] - inter) <= iou]
    return keep


def select_boxes(boxes: np.ndarray, scores: np.ndarray, classes: tuple[int, ...]) -> np.ndarray | None:
    """Class-wise NMS, then the boxes of `classes` scoring over 0.3 (K x 4); None when nothing at all passed
    the first score threshold, which the reference treats differently from "nothing of these classes"."""
    kept = []
    for cls in range(scores.shape[1]):
        valid = scores[:, cls] > MIN_DETECTION_SCORE
        if not valid.any():
            continue
        cls_boxes, cls_scores = boxes[valid], scores[valid, cls]
        for i in nms(cls_boxes, cls_scores):
            kept.append((*cls_boxes[i], cls_scores[i], cls))
    if not kept:
        return None
    dets = np.array(kept, dtype=np.float64)
    return dets[(dets[:, 4] > MIN_BOX_SCORE) & np.isin(dets[:, 5], classes), :4]


def detect(detector: OnnxNet, rgb: np.ndarray, classes: tuple[int, ...]) -> np.ndarray | None:
    x, scale = letterbox(np.ascontiguousarray(rgb[:, :, ::-1]))  # YOLOX reads BGR
    boxes, scores = decode_boxes(detector(x)[0][0].astype(np.float64))
    return select_boxes(boxes / scale, scores, classes)


# --- top-down keypoints ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Crop:
    centre: np.ndarray  # (x, y) in image pixels
    scale: np.ndarray  # (w, h) of the image region the model input covers


def crop_for(box: np.ndarray, input_size: tuple[int, int]) -> Crop:
    """The box grown by 1.25, then widened or heightened to the model's aspect ratio."""
    x1, y1, x2, y2 = box
    centre = np.array([x1 + x2, y1 + y2]) * 0.5
    w, h = (x2 - x1) * BOX_PADDING, (y2 - y1) * BOX_PADDING
    aspect = input_size[0] / input_size[1]
    scale = np.array([w, w / aspect]) if w > h * aspect else np.array([h * aspect, h])
    return Crop(centre, scale)


def warp_matrix(crop: Crop, input_size: tuple[int, int]) -> np.ndarray:
    """The affine map from the crop's region in the image to the model input (no rotation): the centre to the
    input's centre, the half-width up from it to the input's top centre, and the perpendicular point."""
    width, height = input_size
    up = np.array([0.0, crop.scale[0] * -0.5])
    src = np.stack([crop.centre, crop.centre + up, crop.centre + up + np.array([up[1], -up[0]])])
    dst_centre = np.array([width * 0.5, height * 0.5])
    dst_up = np.array([0.0, width * -0.5])
    dst = np.stack([dst_centre, dst_centre + dst_up, dst_centre + dst_up + np.array([dst_up[1], -dst_up[0]])])
    return cv2.getAffineTransform(src.astype(np.float32), dst.astype(np.float32))


def pose_input(rgb: np.ndarray, crop: Crop, input_size: tuple[int, int]) -> np.ndarray:
    warped = cv2.warpAffine(rgb, warp_matrix(crop, input_size), input_size, flags=cv2.INTER_LINEAR)
    x = (warped - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K x 2 keypoints in model-input pixels, K scores): argmax along each axis over the split ratio; the
    score is the smaller maximum; a keypoint with score <= 0 is placed at -1, -1 (before the split)."""
    x_locs, y_locs = simcc_x.argmax(axis=1), simcc_y.argmax(axis=1)
    scores = np.minimum(simcc_x.max(axis=1), simcc_y.max(axis=1))
    locs = np.stack([x_locs, y_locs], axis=1).astype(np.float32)
    locs[scores <= 0] = -1
    return locs / SIMCC_SPLIT, scores


def keypoints(net: OnnxNet, rgb: np.ndarray, boxes: np.ndarray, input_size: tuple[int, int]
              ) -> tuple[np.ndarray, np.ndarray]:
    """(N x K x 2 image pixels, N x K scores) for each box (the whole image when there is no box)."""
    if len(boxes) == 0:
        boxes = np.array([[0, 0, rgb.shape[1], rgb.shape[0]]], dtype=np.float64)
    points, scores = [], []
    for box in boxes:
        crop = crop_for(box, input_size)
        simcc_x, simcc_y = net(pose_input(rgb, crop, input_size))[:2]
        locs, score = decode_simcc(simcc_x[0], simcc_y[0])
        points.append(locs / np.array(input_size) * crop.scale + crop.centre - crop.scale / 2)
        scores.append(score)
    return np.array(points), np.array(scores)


# --- whole body to OpenPose --------------------------------------------------------------------------------
# COCO-WholeBody body order -> OpenPose's: with the neck inserted at 17, OpenPose slot i takes slot MMPOSE[i].
OPENPOSE_SLOTS = (1, 2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17)
MMPOSE_SLOTS = (17, 6, 8, 10, 7, 9, 12, 14, 16, 13, 15, 2, 1, 4, 3)


def to_openpose(points: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """N x 133 keypoints (x, y) and scores -> N x 134 x 3 (x, y, score) in OpenPose order: the body's first
    18, then 6 feet, 68 face, 21 left hand, 21 right hand. The neck is the shoulders' midpoint, present (score
    1) only when both shoulders score over 0.3."""
    info = np.concatenate([points, scores[..., None]], axis=-1)
    neck = info[:, [5, 6]].mean(axis=1)
    neck[:, 2] = np.logical_and(info[:, 5, 2] > MIN_KEYPOINT_SCORE, info[:, 6, 2] > MIN_KEYPOINT_SCORE)
    info = np.insert(info, 17, neck, axis=1)
    info[:, OPENPOSE_SLOTS] = info[:, MMPOSE_SLOTS]
    return info


def _points(part: np.ndarray) -> list | None:
    """Pixel points (None under the score threshold), or None when the whole part is missing."""
    found = [(float(x), float(y)) if s >= MIN_KEYPOINT_SCORE else None for x, y, s in part]
    return None if all(p is None for p in found) else found


def people_from(info: np.ndarray) -> list[PersonPose]:
    people = []
    for person in info:
        body = _points(person[:18]) or [None] * 18
        face = _points(person[24:92])
        if face is not None:
            face += [body[14], body[15]]  # OpenPose's 70 face points end with the two eyes
        people.append(PersonPose(body=body, left_hand=_points(person[92:113]), right_hand=_points(person[113:134]),
                                 face=face))
    return people


# --- the modules ---------------------------------------------------------------------------------------------
def _prepare(image: np.ndarray, resolution: float, feature: str, models: AnnotatorModels | None):
    onnxruntime(feature)  # 501 before anything is looked for
    models = default_models() if models is None else models
    return resize_short_side(hwc3(image), resolution), models


def dw_openpose_full(image: np.ndarray, resolution: float, models: AnnotatorModels | None = None
                     ) -> tuple[np.ndarray, dict]:
    """(OpenPose map with body, hands and face, pose JSON) at processing resolution."""
    img, models = _prepare(image, resolution, "dw_openpose_full", models)
    height, width = img.shape[:2]
    detector, pose = models.get(DETECTOR), models.get(WHOLEBODY)
    boxes = detect(detector, img, PERSON)
    people = []
    if boxes is not None:
        points, scores = keypoints(pose, img, boxes, WHOLEBODY_INPUT)
        people = people_from(to_openpose(points, scores))
    return draw_poses(people, height, width), encode_pose_json(people, height, width)


def animal_openpose(image: np.ndarray, resolution: float, models: AnnotatorModels | None = None
                    ) -> tuple[np.ndarray, dict]:
    """(AP-10K skeletons drawn, pose JSON with "animals") at processing resolution. Every keypoint is drawn
    (the reference keeps them all, scores clipped to 0..1)."""
    img, models = _prepare(image, resolution, "animal_openpose", models)
    height, width = img.shape[:2]
    detector, pose = models.get(DETECTOR), models.get(ANIMAL)
    boxes = detect(detector, img, ANIMALS)
    animals = []
    if boxes is not None and len(boxes):
        points, _scores = keypoints(pose, img, boxes, ANIMAL_INPUT)
        animals = [[(float(x), float(y)) for x, y in animal] for animal in points]
    return draw_animals(animals, height, width), encode_pose_json([], height, width, animals=animals)
