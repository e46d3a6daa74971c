"""The openpose* preprocessors: OpenPose body, hand and face networks, and the decoding the reference uses.

Body: the image is scaled so its height maps to half of OpenPose's 368 box, the network gives 18 joint
heatmaps and 19 limb "part affinity fields"; joints are local maxima of the blurred heatmaps, limbs are
scored by the field along the segment between two joints, and people are assembled greedily from the
best limbs. Hands and faces are then looked for in boxes derived from the arm and head joints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..openpose_draw import draw_poses
from ..openpose_format import BODY_POINTS, FACE_POINTS, HAND_POINTS, PersonPose, encode_pose_json
from ..util import hwc3, resize_short_side
from .openpose_nets import body_net, face_net, hand_net
from .runtime import AnnotatorModels, default_models, image_tensor
from .weights import NetSpec, WeightFile

BODY = NetSpec("OpenPose body", WeightFile(("body_pose_model.pth",), "openpose"), body_net)
HAND = NetSpec("OpenPose hand", WeightFile(("hand_pose_model.pth",), "openpose"), hand_net)
FACE = NetSpec("OpenPose face", WeightFile(("facenet.pth",), "openpose"), face_net)

BOX_SIZE = 368
STRIDE = 8
PAD_VALUE = 128
BODY_SCALE = 0.5  # of BOX_SIZE, relative to the image height
HAND_SCALES = (0.5, 1.0, 1.5, 2.0)  # of BOX_SIZE, each the side of the square hand crop fed to the network
HAND_MAP_SIZE = 128
FACE_INPUT_SIZE = 384
HEATMAP_SIGMA = 3.0
HAND_BLUR_SIGMA = 0.8
JOINT_THRESHOLD = 0.1
LIMB_FIELD_THRESHOLD = 0.05
LIMB_SAMPLES = 10
LIMB_MIN_SUPPORT = 0.8  # share of the samples that must agree with the limb's direction
HAND_THRESHOLD = 0.05
FACE_THRESHOLD = 0.05
MIN_PERSON_PARTS = 4
MIN_PERSON_MEAN_SCORE = 0.4
MIN_BOX = 20  # pixels; smaller hand and face boxes are not looked at
MAX_PEAKS_PER_JOINT = 64  # more is noise (or random weights); it bounds the pairwise limb scoring
SEED_LIMBS = 17  # only the first 17 limbs may start a new person (the last two are ear-shoulder links)

# Limbs as (joint, joint) in 0-based OpenPose body order, in the order they are assembled, and the two
# part-affinity-field channels (x, y) that describe each.
LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
         (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17))
LIMB_FIELDS = ((12, 13), (20, 21), (14, 15), (16, 17), (22, 23), (24, 25), (0, 1), (2, 3), (4, 5), (6, 7),
               (8, 9), (10, 11), (28, 29), (30, 31), (34, 35), (32, 33), (36, 37), (18, 19), (26, 27))


# --- image and map helpers ------------------------------------------------------------------------------

def _resize(x: np.ndarray, width: int, height: int) -> np.ndarray:
    """The reference's resize: area when the target is smaller (by the sum of the sides), Lanczos otherwise;
    any number of channels (OpenCV's area mode takes at most four at a time)."""
    k = float(width + height) / float(x.shape[0] + x.shape[1])
    interpolation = cv2.INTER_AREA if k < 1 else cv2.INTER_LANCZOS4
    if x.ndim == 2 or x.shape[2] <= 4:
        return cv2.resize(x, (int(width), int(height)), interpolation=interpolation)
    parts = [cv2.resize(x[:, :, i:i + 4], (int(width), int(height)), interpolation=interpolation)
             for i in range(0, x.shape[2], 4)]
    return np.concatenate([p if p.ndim == 3 else p[:, :, None] for p in parts], axis=2)


def _pad_to_stride(img: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Bottom/right padding with grey to a multiple of the network stride; returns the padded image and the
    unpadded height and width."""
    h, w = img.shape[:2]
    padded = np.full((h + (-h % STRIDE), w + (-w % STRIDE), img.shape[2]), PAD_VALUE, dtype=img.dtype)
    padded[:h, :w] = img
    return padded, h, w


def _to_input(bgr: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 BGR HxWx3 -> 1x3xHxW in [-0.5, 0.5), the OpenPose networks' input."""
    x = image_tensor(bgr, device)
    return x / 256.0 - 0.5


def _maps_at(output: torch.Tensor, crop_h: int, crop_w: int, height: int, width: int) -> np.ndarray:
    """Network output (1xCxhxw at stride 8) -> HxWxC float32: upsampled x8, padding cut, resized."""
    maps = output[0].permute(1, 2, 0).float().cpu().numpy()
    maps = _resize(maps, maps.shape[1] * STRIDE, maps.shape[0] * STRIDE)[:crop_h, :crop_w]
    return _resize(maps, width, height)


def _blur(x: np.ndarray) -> np.ndarray:
    """Gaussian sigma 3 with mirrored borders: scipy.ndimage.gaussian_filter's defaults, via OpenCV."""
    radius = int(4.0 * HEATMAP_SIGMA + 0.5)
    return cv2.GaussianBlur(x.astype(np.float64), (2 * radius + 1, 2 * radius + 1), HEATMAP_SIGMA,
                            borderType=cv2.BORDER_REFLECT)


# --- body ----------------------------------------------------------------------------------------------

@dataclass
class Peak:
    x: int
    y: int
    score: float
    id: int


def find_joint_peaks(heatmaps: np.ndarray) -> list[list[Peak]]:
    """Per joint (18), the pixels where the blurred heatmap is above JOINT_THRESHOLD and no lower than its
    four neighbours (zero outside), in row-major order, with the unblurred score and a running id. At most
    MAX_PEAKS_PER_JOINT per joint (the reference has no limit and can take minutes on a noisy map)."""
    peaks: list[list[Peak]] = []
    next_id = 0
    for part in range(BODY_POINTS):
        raw = heatmaps[:, :, part]
        blurred = _blur(raw)
        padded = np.pad(blurred, 1)
        centre = padded[1:-1, 1:-1]
        is_peak = ((centre >= padded[:-2, 1:-1]) & (centre >= padded[2:, 1:-1]) & (centre >= padded[1:-1, :-2])
                   & (centre >= padded[1:-1, 2:]) & (centre > JOINT_THRESHOLD))
        ys, xs = np.nonzero(is_peak)
        if len(ys) > MAX_PEAKS_PER_JOINT:  # keep the strongest, in row-major order
            keep = np.sort(np.argsort(-raw[ys, xs], kind="stable")[:MAX_PEAKS_PER_JOINT])
            ys, xs = ys[keep], xs[keep]
        found = [Peak(int(x), int(y), float(raw[y, x]), next_id + i) for i, (y, x) in enumerate(zip(ys, xs))]
        next_id += len(found)
        peaks.append(found)
    return peaks


def _limb_candidates(fields: np.ndarray, a: list[Peak], b: list[Peak], image_height: int) -> list[tuple]:
    """(i, j, score) for every joint pair whose field agrees with the segment i -> j, best first.

    The field is sampled at LIMB_SAMPLES points along the segment (rounded to pixels) and projected on the
    segment's direction; the score is the mean projection, lowered for segments longer than half the image."""
    ax, ay = np.array([p.x for p in a], float)[:, None], np.array([p.y for p in a], float)[:, None]
    dx = np.array([p.x for p in b], float)[None, :] - ax
    dy = np.array([p.y for p in b], float)[None, :] - ay
    norm = np.maximum(0.001, np.sqrt(dx * dx + dy * dy))
    t = np.linspace(0.0, 1.0, LIMB_SAMPLES)
    xs = np.round(ax[..., None] + t * dx[..., None]).astype(int)
    ys = np.round(ay[..., None] + t * dy[..., None]).astype(int)
    along = fields[ys, xs, 0] * (dx / norm)[..., None] + fields[ys, xs, 1] * (dy / norm)[..., None]
    score = along.sum(axis=-1) / LIMB_SAMPLES + np.minimum(0.5 * image_height / norm - 1.0, 0.0)
    agree = np.count_nonzero(along > LIMB_FIELD_THRESHOLD, axis=-1) > LIMB_MIN_SUPPORT * LIMB_SAMPLES
    found = [(int(i), int(j), float(score[i, j])) for i, j in zip(*np.nonzero(agree & (score > 0)))]
    return sorted(found, key=lambda c: c[2], reverse=True)


def assemble_people(peaks: list[list[Peak]], pafs: np.ndarray, image_height: int) -> list[list[Peak | None]]:
    """Greedy OpenPose assembly. Returns, per person, 18 joints (None where absent)."""
    score_of = {p.id: p.score for joint in peaks for p in joint}
    peak_of = {p.id: p for joint in peaks for p in joint}
    # A person: joint ids (-1 = none), total score, number of joints.
    people: list[list] = []
    for limb, ((ja, jb), (fx, fy)) in enumerate(zip(LIMBS, LIMB_FIELDS)):
        a, b = peaks[ja], peaks[jb]
        if not a or not b:
            continue
        connections, used_a, used_b = [], set(), set()
        for i, j, score in _limb_candidates(pafs[:, :, [fx, fy]], a, b, image_height):
            if i not in used_a and j not in used_b:
                connections.append((a[i].id, b[j].id, score))
                used_a.add(i)
                used_b.add(j)
                if len(connections) >= min(len(a), len(b)):
                    break
        for id_a, id_b, score in connections:
            owners = [n for n, person in enumerate(people) if person[0][ja] == id_a or person[0][jb] == id_b][:2]
            if len(owners) == 1:
                person = people[owners[0]]
                if person[0][jb] != id_b:
                    person[0][jb] = id_b
                    person[2] += 1
                    person[1] += score_of[id_b] + score
            elif len(owners) == 2:
                first, second = people[owners[0]], people[owners[1]]
                if not any(x >= 0 and y >= 0 for x, y in zip(first[0], second[0])):  # disjoint: merge
                    first[0] = [x if y < 0 else (y if x < 0 else x + y + 1) for x, y in zip(first[0], second[0])]
                    first[1] += second[1] + score
                    first[2] += second[2]
                    del people[owners[1]]
                else:
                    first[0][jb] = id_b
                    first[2] += 1
                    first[1] += score_of[id_b] + score
            elif limb < SEED_LIMBS:
                joints = [-1] * BODY_POINTS
                joints[ja], joints[jb] = id_a, id_b
                people.append([joints, score_of[id_a] + score_of[id_b] + score, 2])
    kept = [p for p in people if p[2] >= MIN_PERSON_PARTS and p[1] / p[2] >= MIN_PERSON_MEAN_SCORE]
    return [[peak_of[i] if i >= 0 else None for i in p[0]] for p in kept]


def detect_bodies(net, bgr: np.ndarray, device: torch.device) -> list[list[Peak | None]]:
    height, width = bgr.shape[:2]
    scale = BODY_SCALE * BOX_SIZE / height
    small = _resize(bgr, width * scale, height * scale)
    padded, small_h, small_w = _pad_to_stride(small)
    stages = net(_to_input(padded, device))
    pafs_out, heat_out = stages[-1]
    heatmaps = _maps_at(heat_out, small_h, small_w, height, width).astype(np.float64)
    pafs = _maps_at(pafs_out, small_h, small_w, height, width).astype(np.float64)
    return assemble_people(find_joint_peaks(heatmaps), pafs, height)


# --- hands and face -----------------------------------------------------------------------------------

def hand_boxes(joints: list[Peak | None], height: int, width: int) -> list[tuple[int, int, int, bool]]:
    """(x, y, side, is_left) square boxes beyond each wrist, sized from the forearm and upper arm."""
    boxes = []
    for (shoulder, elbow, wrist), is_left in (((5, 6, 7), True), ((2, 3, 4), False)):
        s, e, w = joints[shoulder], joints[elbow], joints[wrist]
        if s is None or e is None or w is None:
            continue
        x = w.x + 0.33 * (w.x - e.x)
        y = w.y + 0.33 * (w.y - e.y)
        side = 1.5 * max(math.hypot(w.x - e.x, w.y - e.y), 0.9 * math.hypot(e.x - s.x, e.y - s.y))
        x, y = max(0.0, x - side / 2), max(0.0, y - side / 2)
        side = min(width - x if x + side > width else side, height - y if y + side > height else side)
        if side >= MIN_BOX:
            boxes.append((int(x), int(y), int(side), is_left))
    return boxes


def face_box(joints: list[Peak | None], height: int, width: int) -> tuple[int, int, int] | None:
    """(x, y, side) around the nose, sized from the eyes (x3) and ears (x1.5), or None."""
    nose = joints[0]
    others = [(joints[i], factor) for i, factor in ((14, 3.0), (15, 3.0), (16, 1.5), (17, 1.5))]
    if nose is None or all(p is None for p, _ in others):
        return None
    half = 0.0
    for point, factor in others:
        if point is not None:
            half = max(half, factor * max(abs(nose.x - point.x), abs(nose.y - point.y)))
    x, y = max(0.0, nose.x - half), max(0.0, nose.y - half)
    # As the reference: the box is 2*half wide, but is clipped only when its first half leaves the image.
    side = min(width - x if x + half > width else 2 * half, height - y if y + half > height else 2 * half)
    return (int(x), int(y), int(side)) if side >= MIN_BOX else None


def hand_points(net, crop_bgr: np.ndarray, device: torch.device) -> list[tuple[int, int] | None]:
    """21 hand joints (pixels in the crop), None where no heatmap rose above HAND_THRESHOLD."""
    crop_h, crop_w = crop_bgr.shape[:2]
    blurred = cv2.GaussianBlur(crop_bgr, (0, 0), HAND_BLUR_SIGMA)
    average = np.zeros((HAND_MAP_SIZE, HAND_MAP_SIZE, 22), dtype=np.float64)
    for factor in HAND_SCALES:
        side = factor * BOX_SIZE
        padded, h, w = _pad_to_stride(_resize(blurred, side, side))
        maps = _maps_at(net(_to_input(padded, device))[-1][0], h, w, HAND_MAP_SIZE, HAND_MAP_SIZE)
        average += maps / len(HAND_SCALES)
    points: list[tuple[int, int] | None] = []
    for part in range(HAND_POINTS):
        raw = average[:, :, part].copy()
        binary = (_blur(raw) > HAND_THRESHOLD).astype(np.uint8)
        if not binary.any():
            points.append(None)
            continue
        count, labels = cv2.connectedComponents(binary, connectivity=8)
        sums = [raw[labels == n].sum() for n in range(1, count)]
        raw[labels != int(np.argmax(sums)) + 1] = 0
        y, x = np.unravel_index(int(np.argmax(raw)), raw.shape)
        points.append((int(float(x) * crop_w / HAND_MAP_SIZE), int(float(y) * crop_h / HAND_MAP_SIZE)))
    return points


def face_points(net, crop_bgr: np.ndarray, device: torch.device) -> list[tuple[int, int] | None]:
    """70 face points (pixels in the crop), None where the heatmap never exceeds FACE_THRESHOLD."""
    crop_h, crop_w = crop_bgr.shape[:2]
    x = _to_input(_resize(crop_bgr, FACE_INPUT_SIZE, FACE_INPUT_SIZE), device)
    heatmaps = net(x)[-1][0]
    heatmaps = torch.nn.functional.interpolate(heatmaps, (crop_h, crop_w), mode="bilinear", align_corners=True)
    heatmaps = heatmaps[0, :FACE_POINTS].float().cpu().numpy()
    points: list[tuple[int, int] | None] = []
    for part in heatmaps:
        flat = int(np.argmax(part))
        y, x = divmod(flat, crop_w)
        points.append((x, y) if part[y, x] > FACE_THRESHOLD else None)
    return points


def _normalised(points, dx: int, dy: int, height: int, width: int):
    """Crop pixels -> canvas-normalised points; a point at the crop's top or left edge counts as missing, as
    in the reference (its peaks use 0 for "none")."""
    return [None if p is None or p[0] < 1e-6 or p[1] < 1e-6 else ((p[0] + dx) / width, (p[1] + dy) / height)
            for p in points]


def detect_poses(bgr: np.ndarray, *, hands: bool, face: bool, models: AnnotatorModels | None = None
                 ) -> list[PersonPose]:
    models = default_models() if models is None else models
    body = models.get(BODY)
    hand = models.get(HAND) if hands else None
    face_model = models.get(FACE) if face else None
    height, width = bgr.shape[:2]
    people = []
    with models.running(*[m for m in (body, hand, face_model) if m is not None]) as device:
        for joints in detect_bodies(body, bgr, device):
            person = PersonPose(body=[None if j is None else (j.x / width, j.y / height) for j in joints])
            if hand is not None:
                for x, y, side, is_left in hand_boxes(joints, height, width):
                    found = _normalised(hand_points(hand, bgr[y:y + side, x:x + side], device), x, y, height, width)
                    if is_left:
                        person.left_hand = found
                    else:
                        person.right_hand = found
            if face_model is not None:
                box = face_box(joints, height, width)
                if box is not None:
                    x, y, side = box
                    person.face = _normalised(face_points(face_model, bgr[y:y + side, x:x + side], device),
                                              x, y, height, width)
            people.append(person)
    return people


def openpose(image: np.ndarray, resolution: float, *, body: bool, hands: bool, face: bool,
             models: AnnotatorModels | None = None) -> tuple[np.ndarray, dict]:
    """(map, pose JSON) at processing resolution, like the reference's openpose / _hand / _face / _faceonly /
    _full: `hands` and `face` choose what is detected and drawn, `body` only whether the body is drawn."""
    img = resize_short_side(hwc3(image), resolution)
    height, width = img.shape[:2]
    people = detect_poses(np.ascontiguousarray(img[:, :, ::-1]), hands=hands, face=face, models=models)
    drawn = draw_poses(people, height, width, body=body, hands=hands, face=face)
    return drawn, encode_pose_json(people, height, width)
