"""Face embeddings and keypoints for FaceID and InstantID: insightface's face analysis, run from the published
ONNX files with onnxruntime and our own pre/post-processing (no `insightface` package).

What the reference does through `insightface.app.FaceAnalysis` (0.7.3), step by step:

- Detection (SCRFD: buffalo_l's det_10g.onnx, antelopev2's scrfd_10g_bnkps.onnx): the image scaled (bilinear)
  to fit 640 x 640 keeping its aspect, at the top left of a black canvas; RGB, (x - 127.5) / 128 in. Per
  stride (8, 16, 32; two anchors per cell, or 8..128 with one) a score, four distances (left, top, right,
  bottom) and five keypoint offsets, all in units of the stride, from the anchor centre (x, y) * stride.
  Scores >= 0.5 are kept, then greedy NMS at IoU 0.4 with the +1 box areas; boxes and keypoints are divided
  by the canvas scale.
- The face used is the largest box (area (x2 - x1)(y2 - y1); a tie goes to the later in score order), as the
  reference's `pick_largest_face`; more than one face is logged.
- Recognition (ArcFace: buffalo_l's w600k_r50.onnx, antelopev2's glintr100.onnx): the similarity transform
  (Umeyama least squares: rotation, one scale, translation) from the five keypoints to ArcFace's 112 x 112
  template, `cv2.warpAffine` (bilinear, black outside); RGB, (x - 127.5) / 127.5 in — or raw pixels for an
  MXNet export, which normalises inside its graph (insightface's rule: a node named Sub/_minus and one named
  Mul/_mul among the first eight). Out: the 512-value embedding.

The modules (the reference's `InsightFaceModel`):
- ip-adapter_face_id: buffalo_l on the image as given; the embedding divided by its norm (`normed_embedding`),
  as a [1, 512] tensor;
- ip-adapter_face_id_plus: that, plus the CLIP ViT-H embeddings of the same image (clip_vision.py);
- instant_id_face_embedding: antelopev2 on the image scaled to the Resolution (short side) and edge-padded to
  a multiple of 64; the raw `embedding` [512];
- instant_id_face_keypoints: the same detection, its five keypoints drawn InstantID's way (`draw_kps`):
  ellipses 4 px wide from each point to the nose in 60 % of the first point's colour, then discs of radius 10
  in red, green, blue, yellow, magenta (eyes, nose, mouth corners); the padding is cropped off.

Only the detector and the recogniser of each pack are read (the other files of buffalo_l / antelopev2 —
landmarks, gender/age — give nothing these modules use). Files are looked for in the annotator folder and in
the reference's `insightface/models/<pack>` sub-folder; nothing is downloaded. No face is a 422 naming the
image.
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np
import torch

from lib_controlnet.errors import InputError, ModelFileError

from ..util import hwc3, resize_short_side
from .dwpose import nms
from .onnx_models import OnnxNet, OnnxSpec, first_node_names, onnxruntime, signature
from .runtime import AnnotatorModels, default_models
from .weights import WeightFile

logger = logging.getLogger(__name__)

BUFFALO_L_ZIP = "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip"
ANTELOPEV2_REPO = "https://huggingface.co/DIAMONIK7777/antelopev2"  # the reference's mirror of antelopev2

DET_SIZE = (640, 640)  # (width, height): FaceAnalysis.prepare(det_size=(640, 640)) for files with a free size
DET_THRESHOLD = 0.5
NMS_IOU = 0.4
DET_MEAN, DET_STD = 127.5, 128.0
KEYPOINTS = 5
EMBED_DIM = 512
ARCFACE_SIZE = 112
# ArcFace's template: where the eyes, the nose tip and the mouth corners go in the 112 x 112 crop
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                             [70.7299, 92.2041]])
# stride layouts by output count: (strides, anchors per cell); only those with keypoints (alignment needs them)
SCRFD_LAYOUTS = {9: ((8, 16, 32), 2), 15: ((8, 16, 32, 64, 128), 1)}
PAD_MULTIPLE = 64

KPS_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255))
KPS_LIMBS = ((0, 2), (1, 2), (3, 2), (4, 2))  # each point to the nose
STICK_WIDTH = 4
STICK_SHADE = 0.6
KPS_RADIUS = 10


# --- the networks ------------------------------------------------------------------------------------------
class ScrfdNet(OnnxNet):
    """An SCRFD session and the layout its outputs say: strides, anchors per cell, batched outputs or not."""

    def __init__(self, session, title: str):
        super().__init__(session, title)
        inputs, outputs = signature(session)
        height, width = inputs[0][2:4] if len(inputs[0]) == 4 else (None, None)
        self.input_size = (width, height) if width and height else DET_SIZE
        self.strides, self.anchors = SCRFD_LAYOUTS.get(len(outputs), ((), 0))
        self.batched = bool(outputs) and len(outputs[0]) == 3


class ScrfdSpec(OnnxSpec):
    """SCRFD with keypoints: one image input, then per stride a score, a box and a keypoint output (9 or 15)."""

    def wrap(self, session, data: bytes) -> ScrfdNet:
        return ScrfdNet(session, self.title)

    def _check(self, net: ScrfdNet, name: str) -> None:
        inputs, outputs = signature(net.session)
        ok = (len(inputs) == 1 and len(inputs[0]) == 4 and inputs[0][1] in (3, None) and net.strides
              and all(len(o) in (2, 3) and len(o) == len(outputs[0]) for o in outputs))
        if ok:
            widths = [1] * len(net.strides) + [4] * len(net.strides) + [2 * KEYPOINTS] * len(net.strides)
            ok = all(o[-1] in (w, None) for o, w in zip(outputs, widths))
        if not ok:
            self.refuse(name, (inputs, outputs), "one 1x3xHxW input and 9 (or 15) outputs are expected: per stride "
                        "8, 16, 32 a score (N x 1), then the boxes (N x 4), then the keypoints (N x 10)")


class ArcFaceNet(OnnxNet):
    def __init__(self, session, title: str, mean: float, std: float):
        super().__init__(session, title)
        self.mean, self.std = mean, std


class ArcFaceSpec(OnnxSpec):
    def wrap(self, session, data: bytes) -> ArcFaceNet:
        mean, std = arcface_normalisation(first_node_names(data, 8))
        return ArcFaceNet(session, self.title, mean, std)


def arcface_normalisation(names: list[str]) -> tuple[float, float]:
    """(mean, std) the recogniser's input needs: an MXNet export subtracts and scales inside its graph."""
    has_sub = any(n.startswith(("Sub", "_minus")) for n in names)
    has_mul = any(n.startswith(("Mul", "_mul")) for n in names)
    return (0.0, 1.0) if has_sub and has_mul else (127.5, 127.5)


def _detector(name: str, pack: str, url: str) -> ScrfdSpec:
    weight = WeightFile((name,), f"insightface/models/{pack}", urls={name: url})
    return ScrfdSpec(f"SCRFD face detector ({pack})", weight, inputs=[(None, 3, None, None)], outputs=[])


def _recogniser(name: str, pack: str, url: str) -> ArcFaceSpec:
    weight = WeightFile((name,), f"insightface/models/{pack}", urls={name: url})
    return ArcFaceSpec(f"ArcFace face recogniser ({pack})", weight,
                       inputs=[(None, 3, ARCFACE_SIZE, ARCFACE_SIZE)], outputs=[(None, EMBED_DIM)])


BUFFALO_DETECTOR = _detector("det_10g.onnx", "buffalo_l", BUFFALO_L_ZIP)
BUFFALO_RECOGNISER = _recogniser("w600k_r50.onnx", "buffalo_l", BUFFALO_L_ZIP)
ANTELOPE_DETECTOR = _detector("scrfd_10g_bnkps.onnx", "antelopev2",
                              f"{ANTELOPEV2_REPO}/blob/main/scrfd_10g_bnkps.onnx")
ANTELOPE_RECOGNISER = _recogniser("glintr100.onnx", "antelopev2", f"{ANTELOPEV2_REPO}/blob/main/glintr100.onnx")
PACKS = {"buffalo_l": (BUFFALO_DETECTOR, BUFFALO_RECOGNISER), "antelopev2": (ANTELOPE_DETECTOR, ANTELOPE_RECOGNISER)}


# --- detection ---------------------------------------------------------------------------------------------
def detector_input(rgb: np.ndarray, size: tuple[int, int] = DET_SIZE) -> tuple[np.ndarray, float]:
    """(1x3xHxW float32 network input, scale from image to network pixels): the image scaled to fit `size`
    (width, height) keeping its aspect (sizes truncated), top left on black, (x - 127.5) / 128."""
    width, height = size
    if rgb.shape[0] / rgb.shape[1] > height / width:
        new_h = height
        new_w = max(1, int(new_h / (rgb.shape[0] / rgb.shape[1])))  # at least a pixel (a 1 x 2000 strip)
    else:
        new_w = width
        new_h = max(1, int(new_w * (rgb.shape[0] / rgb.shape[1])))
    canvas = np.zeros((height, width, 3), np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(rgb, (new_w, new_h))
    blob = (canvas.astype(np.float32) - DET_MEAN) / DET_STD
    return np.ascontiguousarray(blob.transpose(2, 0, 1)[None]), new_h / rgb.shape[0]


def anchor_centres(rows: int, cols: int, stride: int, anchors: int) -> np.ndarray:
    """(rows * cols * anchors) x 2 anchor centres (x, y) in network pixels, row by row, each cell's anchors
    next to each other."""
    ys, xs = np.mgrid[:rows, :cols]
    centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centres, anchors, axis=0)


def decode_detections(outputs: list[np.ndarray], net: ScrfdNet, input_hw: tuple[int, int], threshold: float
                      = DET_THRESHOLD) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores K, boxes K x 4, keypoints K x 5 x 2) in network pixels of every anchor scoring >= threshold,
    stride by stride."""
    levels = len(net.strides)
    all_scores, all_boxes, all_points = [], [], []
    for i, stride in enumerate(net.strides):
        score, dist, kps = (outputs[i + levels * part] for part in range(3))
        if net.batched:
            score, dist, kps = score[0], dist[0], kps[0]
        centres = anchor_centres(input_hw[0] // stride, input_hw[1] // stride, stride, net.anchors)
        score = score.reshape(-1)
        if score.shape[0] != centres.shape[0]:
            raise ModelFileError(f"the face detector gave {score.shape[0]} scores at stride {stride}, where its "
                                 f"input size makes {centres.shape[0]} anchors", field="module")
        keep = score >= threshold
        dist = dist.reshape(-1, 4)[keep] * stride
        c = centres[keep]
        all_scores.append(score[keep])
        all_boxes.append(np.concatenate([c - dist[:, :2], c + dist[:, 2:]], axis=1))
        all_points.append(c[:, None, :] + kps.reshape(-1, KEYPOINTS, 2)[keep] * stride)
    return np.concatenate(all_scores), np.concatenate(all_boxes), np.concatenate(all_points)


def detect_faces(net: ScrfdNet, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N x 5: box x1, y1, x2, y2 and score; N x 5 x 2 keypoints) in image pixels, highest score first."""
    blob, scale = detector_input(rgb, net.input_size)
    scores, boxes, points = decode_detections(net(blob), net, blob.shape[2:])
    order = scores.argsort()[::-1]
    dets = np.hstack([boxes / scale, scores[:, None]]).astype(np.float32)[order]
    points = (points / scale)[order]
    keep = nms(dets[:, :4], dets[:, 4], NMS_IOU)
    return dets[keep], points[keep]


def largest_face(dets: np.ndarray) -> int:
    """Index of the largest box; among equal areas the later one (the reference sorts by area, takes the last)."""
    if len(dets) == 0:
        raise InputError("no face found in the image (the face detector found none scoring 0.5 or more)",
                         field="image")
    if len(dets) > 1:
        logger.warning("Insightface: more than one face is detected in the image; only the biggest one is used")
    areas = (dets[:, 2] - dets[:, 0]) * (dets[:, 3] - dets[:, 1])
    return sorted(range(len(dets)), key=lambda i: areas[i])[-1]


# --- alignment and recognition -----------------------------------------------------------------------------
def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2 x 3 similarity (rotation, uniform scale, translation) mapping the points `src` onto `dst` in the
    least-squares sense, without reflection (Umeyama 1991, as scikit-image's SimilarityTransform.estimate)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mean_s, mean_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mean_s, dst - mean_d
    cov = d.T @ s / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    signs = np.ones(2)
    if np.linalg.det(cov) < 0:
        signs[1] = -1
    rank = np.linalg.matrix_rank(cov)
    if rank == 0:
        return np.full((2, 3), np.nan)
    if rank == 1 and np.linalg.det(u) * np.linalg.det(vt) > 0:
        rotation = u @ vt
    elif rank == 1:
        rotation = u @ np.diag([1.0, -1.0]) @ vt
    else:
        rotation = u @ np.diag(signs) @ vt
    scale = (sigma @ signs) / s.var(axis=0).sum()
    translation = mean_d - scale * rotation @ mean_s
    return np.hstack([scale * rotation, translation[:, None]])


def alignment_matrix(keypoints: np.ndarray, size: int = ARCFACE_SIZE) -> np.ndarray:
    """insightface's `estimate_norm`: the template scaled for a size of 112k (or 128k, shifted right by 8k)."""
    if size % 112 == 0:
        template = ARCFACE_TEMPLATE * (size / 112)
    else:
        template = ARCFACE_TEMPLATE * (size / 128) + np.array([8.0 * size / 128, 0.0])
    return similarity_transform(keypoints, template)


def norm_crop(rgb: np.ndarray, keypoints: np.ndarray, size: int = ARCFACE_SIZE) -> np.ndarray:
    """The face warped onto ArcFace's template (bilinear, black outside), size x size."""
    return cv2.warpAffine(rgb, alignment_matrix(keypoints, size), (size, size), borderValue=0.0)


def recogniser_input(crop: np.ndarray, net: ArcFaceNet) -> np.ndarray:
    blob = (crop.astype(np.float32) - net.mean) / net.std
    return np.ascontiguousarray(blob.transpose(2, 0, 1)[None])


def embedding(net: ArcFaceNet, rgb: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """The 512-value ArcFace embedding of the face at `keypoints` (insightface's `face.embedding`)."""
    return net(recogniser_input(norm_crop(rgb, keypoints), net))[0].reshape(-1).astype(np.float32)


# --- keypoint map ------------------------------------------------------------------------------------------
def draw_keypoints(height: int, width: int, keypoints: np.ndarray) -> np.ndarray:
    """InstantID's `draw_kps` on a black HxWx3 canvas."""
    canvas = np.zeros((height, width, 3), np.uint8)
    for a, b in KPS_LIMBS:
        (xa, ya), (xb, yb) = keypoints[a], keypoints[b]
        length = math.hypot(xa - xb, ya - yb)
        angle = math.degrees(math.atan2(ya - yb, xa - xb))
        polygon = cv2.ellipse2Poly((int((xa + xb) / 2), int((ya + yb) / 2)), (int(length / 2), STICK_WIDTH),
                                   int(angle), 0, 360, 1)
        cv2.fillConvexPoly(canvas, polygon, KPS_COLOURS[a])
    canvas = (canvas * STICK_SHADE).astype(np.uint8)
    for (x, y), colour in zip(keypoints, KPS_COLOURS):
        cv2.circle(canvas, (int(x), int(y)), KPS_RADIUS, colour, -1)
    return canvas


# --- the modules ---------------------------------------------------------------------------------------------
def _nets(pack: str, feature: str, models: AnnotatorModels | None, recogniser: bool = True):
    onnxruntime(feature)  # 501 before anything is looked for
    models = default_models() if models is None else models
    det_spec, rec_spec = PACKS[pack]
    return models.get(det_spec), models.get(rec_spec) if recogniser else None


def analyse(rgb: np.ndarray, detector: ScrfdNet, recogniser: ArcFaceNet | None):
    """(box with score, keypoints 5 x 2, raw embedding or None) of the largest face in `rgb`."""
    dets, points = detect_faces(detector, rgb)
    best = largest_face(dets)
    found = None if recogniser is None else embedding(recogniser, rgb, points[best])
    return dets[best], points[best], found


def face_id_embedding(image: np.ndarray, models: AnnotatorModels | None = None, feature: str = "ip-adapter_face_id"):
    """ip-adapter_face_id: buffalo_l's normed embedding of the largest face, [1, 512] float32."""
    detector, recogniser = _nets("buffalo_l", feature, models)
    _, _, raw = analyse(hwc3(image), detector, recogniser)
    return torch.from_numpy(raw / np.linalg.norm(raw)).float().reshape(1, EMBED_DIM)


def face_id_plus_embedding(image: np.ndarray, models: AnnotatorModels | None = None) -> dict:
    """ip-adapter_face_id_plus: {"face_embed": the FaceID embedding, and CLIP ViT-H's embeddings of the image}."""
    from .clip_vision import clip_embedding

    face = face_id_embedding(image, models, feature="ip-adapter_face_id_plus")
    return {"face_embed": face, **clip_embedding(hwc3(image), "clip_h", models)}


def instant_id_input(image: np.ndarray, resolution: float) -> tuple[np.ndarray, tuple[int, int]]:
    """The image scaled to `resolution` (short side) and edge-padded to a multiple of 64, and the scaled size."""
    img = resize_short_side(hwc3(image), resolution)
    height, width = img.shape[:2]
    padded = np.pad(img, [(0, -height % PAD_MULTIPLE), (0, -width % PAD_MULTIPLE), (0, 0)], mode="edge")
    return np.ascontiguousarray(padded), (height, width)


def instant_id_face_embedding(image: np.ndarray, resolution: float, models: AnnotatorModels | None = None):
    """instant_id_face_embedding: antelopev2's raw embedding of the largest face, [512] float32."""
    detector, recogniser = _nets("antelopev2", "instant_id_face_embedding", models)
    img, _ = instant_id_input(image, resolution)
    _, _, raw = analyse(img, detector, recogniser)
    return torch.from_numpy(raw).float()


def instant_id_face_keypoints(image: np.ndarray, resolution: float,
                              models: AnnotatorModels | None = None) -> np.ndarray:
    """instant_id_face_keypoints: the largest face's five keypoints drawn, at processing resolution."""
    detector, _ = _nets("antelopev2", "instant_id_face_keypoints", models, recogniser=False)
    img, (height, width) = instant_id_input(image, resolution)
    _, points, _ = analyse(img, detector, None)
    return np.ascontiguousarray(draw_keypoints(*img.shape[:2], points)[:height, :width])
