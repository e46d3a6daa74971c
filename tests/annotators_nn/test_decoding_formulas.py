"""Pre/post-processing against the reference's formulas, on inputs whose answer is known: edge NMS, the safe
quantisation, pixel-difference convolutions, OpenPose decoding (joints, limbs, people, hand and face boxes)
and M-LSD segment decoding."""

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from annotator.neural import mlsd, openpose
from annotator.neural.postprocess import edge_nms, safe_step, scribble_from_soft_edges
from annotator.neural.softedge import PixelDifferenceConv

# --- edges ------------------------------------------------------------------------------------------


def test_safe_step_quantises_to_thirds_then_halves():
    x = np.array([0.0, 0.33, 0.34, 0.66, 0.67, 0.99, 1.0], np.float32)
    assert safe_step(x).tolist() == [0.0, 0.0, 0.5, 0.5, 1.0, 1.0, 1.5]


def _nms_oracle(edge, threshold, sigma):
    """Directional maxima written out with explicit neighbours (outside the image never wins)."""
    x = cv2.GaussianBlur(edge.astype(np.float32), (0, 0), sigma)
    p = np.pad(x, 1, constant_values=-np.inf)
    c = p[1:-1, 1:-1]
    pairs = [(p[1:-1, :-2], p[1:-1, 2:]), (p[:-2, 1:-1], p[2:, 1:-1]),  # horizontal, vertical
             (p[:-2, :-2], p[2:, 2:]), (p[:-2, 2:], p[2:, :-2])]  # the two diagonals
    keep = np.zeros_like(c, bool)
    for a, b in pairs:
        keep |= (c >= a) & (c >= b)
    return np.where(keep & (c > threshold), 255, 0).astype(np.uint8)


def test_edge_nms_keeps_ridge_pixels_of_a_soft_line():
    edge = np.zeros((40, 50), np.uint8)
    cv2.line(edge, (5, 8), (45, 30), 255, 5)
    edge = cv2.GaussianBlur(edge, (0, 0), 2)
    out = edge_nms(edge, 127, 3.0)
    assert np.array_equal(out, _nms_oracle(edge, 127, 3.0))
    assert 30 < (out > 0).sum() < 120  # a thin ridge along a 45-pixel line, not the 5-pixel band


def test_scribble_is_the_nms_ridge_widened_by_a_blur():
    edge = np.zeros((64, 64), np.uint8)
    cv2.circle(edge, (32, 32), 20, 255, 4)
    out = scribble_from_soft_edges(cv2.GaussianBlur(edge, (0, 0), 2))
    ridge = _nms_oracle(cv2.GaussianBlur(edge, (0, 0), 2), 127, 3.0)
    expected = np.where(cv2.GaussianBlur(ridge, (0, 0), 3.0) > 4, 255, 0)
    assert np.array_equal(out, expected) and set(np.unique(out)) == {0, 255}


# --- pixel difference convolutions (PiDiNet) ----------------------------------------------------------


def _neighbourhoods(x):
    """N x C x 9 x H x W: the 3x3 neighbourhood of every pixel (zero outside), row-major."""
    n, c, h, w = x.shape
    return F.unfold(x, 3, padding=1).view(n, c, 9, h, w)


@pytest.mark.parametrize("groups", [1, 4])
def test_central_and_angular_difference_convolutions_match_their_definitions(groups):
    torch.manual_seed(0)
    x = torch.randn(1, 4, 9, 11)
    for kind in ("cd", "ad"):
        conv = PixelDifferenceConv(kind, 4, 4, groups=groups)
        w = conv.weight.detach().flatten(2)  # out x in/groups x 9
        patches = _neighbourhoods(x)
        if kind == "cd":  # sum_i w_i (x_i - x_centre)
            diff = patches - patches[:, :, 4:5]
        else:  # sum_i w_i (x_i - x_next), next = clockwise neighbour on the ring (centre: itself)
            clockwise_next = [1, 2, 5, 0, 4, 8, 3, 6, 7]
            diff = patches - patches[:, :, clockwise_next]
        per_group = 4 // groups
        expected = torch.zeros(1, 4, 9, 11)
        for o in range(4):
            g = o // per_group
            for i in range(per_group):
                expected[0, o] += (w[o, i][:, None, None] * diff[0, g * per_group + i]).sum(0)
        assert torch.allclose(conv(x), expected, atol=1e-5), kind


def test_radial_difference_kernel_is_an_outer_minus_inner_ring_5x5():
    conv = PixelDifferenceConv("rd", 2, 3)
    kernel, padding = conv.kernel()
    assert kernel.shape == (3, 2, 5, 5) and padding == 2
    w = conv.weight.detach().flatten(2)
    k = kernel.detach().flatten(2)
    outer, inner = [0, 2, 4, 10, 14, 20, 22, 24], [6, 7, 8, 11, 13, 16, 17, 18]
    assert torch.equal(k[:, :, outer], w[:, :, 1:]) and torch.equal(k[:, :, inner], -w[:, :, 1:])
    rest = sorted(set(range(25)) - set(outer) - set(inner))
    assert torch.count_nonzero(k[:, :, rest]) == 0  # centre and the unused positions
    assert torch.allclose(kernel.sum(dim=(2, 3)), torch.zeros(3, 2), atol=1e-6)  # no response to flat areas


# --- OpenPose -------------------------------------------------------------------------------------------

def _skeleton(cx, top, s):
    """18 joints (x, y) of an upright person facing the camera."""
    return np.array([(cx, top), (cx, top + 1.2 * s), (cx - 0.8 * s, top + 1.2 * s), (cx - 1.0 * s, top + 2.4 * s),
                     (cx - 1.1 * s, top + 3.5 * s), (cx + 0.8 * s, top + 1.2 * s), (cx + 1.0 * s, top + 2.4 * s),
                     (cx + 1.1 * s, top + 3.5 * s), (cx - 0.5 * s, top + 3.6 * s), (cx - 0.55 * s, top + 5.0 * s),
                     (cx - 0.6 * s, top + 6.4 * s), (cx + 0.5 * s, top + 3.6 * s), (cx + 0.55 * s, top + 5.0 * s),
                     (cx + 0.6 * s, top + 6.4 * s), (cx - 0.2 * s, top - 0.2 * s), (cx + 0.2 * s, top - 0.2 * s),
                     (cx - 0.45 * s, top - 0.05 * s), (cx + 0.45 * s, top - 0.05 * s)])


def _pose_maps(people, height, width, sigma=3.0):
    """Heatmaps with a Gaussian per joint and affinity fields: the limb's unit vector near each limb."""
    yy, xx = np.mgrid[0:height, 0:width].astype(float)
    heat = np.zeros((height, width, 19))
    paf = np.zeros((height, width, 38))
    for joints in people:
        for k, (x, y) in enumerate(joints):
            heat[:, :, k] = np.maximum(heat[:, :, k], 0.9 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2)))
        for (a, b), (fx, fy) in zip(openpose.LIMBS, openpose.LIMB_FIELDS):
            d = joints[b] - joints[a]
            u = d / np.linalg.norm(d)
            along = (xx - joints[a][0]) * u[0] + (yy - joints[a][1]) * u[1]
            across = np.abs(-(xx - joints[a][0]) * u[1] + (yy - joints[a][1]) * u[0])
            near = (along >= -2) & (along <= np.linalg.norm(d) + 2) & (across <= 4)
            paf[:, :, fx][near], paf[:, :, fy][near] = u[0], u[1]
    return heat, paf


def test_two_synthetic_people_are_found_and_assembled():
    truth = [_skeleton(90, 40, 22), _skeleton(230, 50, 20)]
    heat, paf = _pose_maps(truth, 220, 320)
    people = openpose.assemble_people(openpose.find_joint_peaks(heat), paf, 220)
    assert len(people) == 2
    found = sorted(people, key=lambda p: p[1].x)
    for person, joints in zip(found, truth):
        assert all(p is not None for p in person)
        located = np.array([(p.x, p.y) for p in person])
        assert np.abs(located - np.round(joints)).max() <= 1


def test_a_person_with_too_few_parts_or_a_missing_field_is_not_assembled():
    truth = [_skeleton(90, 40, 22)]
    heat, paf = _pose_maps(truth, 220, 200)
    heat[:, :, 2:] = 0  # only nose and neck: one limb, fewer than 4 parts
    assert openpose.assemble_people(openpose.find_joint_peaks(heat), paf, 220) == []
    heat, _ = _pose_maps(truth, 220, 200)
    assert openpose.assemble_people(openpose.find_joint_peaks(heat), np.zeros_like(paf), 220) == []


def test_hand_and_face_boxes_follow_the_reference_geometry():
    joints = [None] * 18
    P = openpose.Peak
    joints[2], joints[3], joints[4] = P(100, 100, 1, 0), P(100, 140, 1, 1), P(100, 170, 1, 2)  # right arm down
    boxes = openpose.hand_boxes(joints, 400, 400)
    side = 1.5 * max(30, 0.9 * 40)
    assert boxes == [(int(100 - side / 2), int(170 + 0.33 * 30 - side / 2), int(side), False)]
    joints[0], joints[14] = P(200, 60, 1, 3), P(190, 55, 1, 4)
    half = 3.0 * 10
    assert openpose.face_box(joints, 400, 400) == (170, 30, int(2 * half))
    joints[14] = P(199, 59, 1, 4)  # eyes 1 px from the nose: box under 20 px
    assert openpose.face_box(joints, 400, 400) is None


def test_hand_points_come_from_the_biggest_blob_of_the_averaged_heatmaps():
    targets = {0: (0.25, 0.5), 5: (0.7, 0.3), 20: (0.5, 0.8)}

    def net(x):  # 22 heatmaps at stride 8 with one blob per listed joint, wherever the input size
        h, w = x.shape[2] // 8, x.shape[3] // 8
        yy, xx = np.mgrid[0:h, 0:w]
        maps = np.zeros((22, h, w), np.float32)
        for joint, (fx, fy) in targets.items():
            maps[joint] = np.exp(-((xx - fx * w) ** 2 + (yy - fy * h) ** 2) / (2 * (0.04 * w) ** 2))
        return [[torch.from_numpy(maps)[None]]]

    crop = np.full((96, 96, 3), 128, np.uint8)
    points = openpose.hand_points(net, crop, torch.device("cpu"))
    assert len(points) == 21
    for joint, (fx, fy) in targets.items():
        assert abs(points[joint][0] - fx * 96) <= 3 and abs(points[joint][1] - fy * 96) <= 3
    assert sum(p is None for p in points) == 18


def test_face_points_are_heatmap_maxima_and_absent_ones_stay_in_place():
    def net(x):
        maps = torch.zeros(1, 71, 48, 48)
        maps[0, 10, 12, 30] = 1.0
        maps[0, 69, 40, 8] = 1.0
        return [[maps]]

    points = openpose.face_points(net, np.zeros((120, 120, 3), np.uint8), torch.device("cpu"))
    assert len(points) == 70 and sum(p is not None for p in points) == 2
    scale = 119 / 47  # bilinear, corners aligned
    assert points[10] == (round(30 * scale), round(12 * scale)) and points[69] == (round(8 * scale), round(40 * scale))


# --- M-LSD ---------------------------------------------------------------------------------------------------

def test_mlsd_segments_are_centre_plus_displacements_doubled():
    maps = torch.full((1, 9, 32, 40), -10.0)
    maps[0, 0, 10, 20] = 3.0  # score sigmoid(3) = 0.95
    maps[0, 1:5, 10, 20] = torch.tensor([-5.0, 1.0, 5.0, -1.0])
    maps[0, 0, 20, 5] = 0.0  # score 0.5, length sqrt(8) at half resolution
    maps[0, 1:5, 20, 5] = torch.tensor([1.0, 1.0, -1.0, -1.0])
    segments = mlsd.decode_segments(maps, 0.1, 0.1)
    assert sorted(map(tuple, segments.tolist())) == [(12.0, 42.0, 8.0, 38.0), (30.0, 22.0, 50.0, 18.0)]
    assert mlsd.decode_segments(maps, 0.9, 0.1).tolist() == [[30.0, 22.0, 50.0, 18.0]]  # score threshold
    assert mlsd.decode_segments(maps, 0.1, math.sqrt(8) + 0.01).tolist() == [[30.0, 22.0, 50.0, 18.0]]  # length
    maps[0, 0, 20, 6] = 1.0  # a stronger neighbour (3x3 non-maximum suppression) hides the weaker centre
    assert mlsd.decode_segments(maps, 0.1, 0.1).tolist() == [[30.0, 22.0, 50.0, 18.0]]
