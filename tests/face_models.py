"""Small ONNX stand-ins for insightface's published face files, with their input/output signatures.

- `scrfd(...)`: det_10g.onnx / scrfd_10g_bnkps.onnx: input 1x3xHxW (H, W free as published), 9 outputs (per
  stride 8, 16, 32: scores N x 1, then boxes N x 4, then keypoints N x 10; N = cells x 2 anchors at 640 x 640),
  or 15 (strides 8..128, one anchor), optionally batched (1 x N x C). Each output is a designed constant plus
  `scale` x a term of the image (tiny by default), so tests place faces where they want them.
- `arcface(...)`: w600k_r50.onnx / glintr100.onnx: input Nx3x112x112 -> N x 512, a known linear map of the
  input (16 x 16 average pooling, then a fixed 147 x 512 matrix and a bias), so the embedding of a crop can be
  worked out in NumPy. `mxnet=True` names the first nodes `_minus0` / `_mul0`, as MXNet exports do.

`designed_scrfd_outputs(faces)` turns faces given in network pixels (box, score, keypoints, stride, anchor) into
the raw outputs, by inverting SCRFD's decoding (distances and offsets in units of the stride from the anchor
centre (cx, cy) * stride).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tests.annotators_nn.onnx_builder import Graph

DET_SIDE = 640
EMBED = 512
POOL = 16


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # network pixels x1, y1, x2, y2
    score: float
    keypoints: np.ndarray  # 5 x 2 network pixels
    stride: int
    cell: tuple[int, int]  # (column, row) of its anchor
    anchor: int = 0


def _layout(outputs: int) -> tuple[tuple[int, ...], int]:
    return ((8, 16, 32), 2) if outputs == 9 else ((8, 16, 32, 64, 128), 1)


def designed_scrfd_outputs(faces: list[Face], outputs: int = 9, side: int = DET_SIDE) -> list[np.ndarray]:
    strides, anchors = _layout(outputs)
    scores = [np.zeros(((side // s) ** 2 * anchors, 1), np.float32) for s in strides]
    boxes = [np.zeros(((side // s) ** 2 * anchors, 4), np.float32) for s in strides]
    points = [np.zeros(((side // s) ** 2 * anchors, 10), np.float32) for s in strides]
    for face in faces:
        level = strides.index(face.stride)
        col, row = face.cell
        index = (row * (side // face.stride) + col) * anchors + face.anchor
        cx, cy = col * face.stride, row * face.stride
        x1, y1, x2, y2 = face.box
        scores[level][index] = face.score
        boxes[level][index] = np.array([cx - x1, cy - y1, x2 - cx, y2 - cy]) / face.stride
        points[level][index] = ((np.asarray(face.keypoints) - [cx, cy]) / face.stride).reshape(-1)
    return scores + boxes + points


def scrfd(designed: list[np.ndarray], *, free_size: bool = True, side: int = DET_SIDE, batched: bool = False,
          seed: int = 0, scale: float = 1e-6) -> bytes:
    graph, rng = Graph(), np.random.default_rng(seed)
    x = "input.1"
    y = graph.op("Conv", x, graph.const(rng.normal(0, 1, (1, 3, 1, 1)).astype(np.float32)))
    y = graph.op("GlobalAveragePool", y)  # 1 x 1 x 1 x 1: one number of the image
    y = graph.op("Reshape", y, graph.const(np.array([1, 1] + [1] * batched, np.int64)))
    strides, _ = _layout(len(designed))
    names = [f"{kind}_{s}" for kind in ("score", "bbox", "kps") for s in strides]
    outputs, shapes = {}, {}
    for name, value in zip(names, designed):
        value = value[None] if batched else value
        term = graph.op("Mul", y, graph.const((rng.normal(0, 1, value.shape) * scale).astype(np.float32)))
        outputs[graph.op("Add", term, graph.const(value.astype(np.float32)))] = name
        shapes[name] = value.shape
    size = ("H", "W") if free_size else (side, side)
    return graph.model({x: (1, 3, *size)}, shapes, outputs)


@dataclass(frozen=True)
class ArcFaceWeights:
    matrix: np.ndarray  # 147 x 512
    bias: np.ndarray  # 512

    @classmethod
    def random(cls, seed: int = 0) -> ArcFaceWeights:
        rng = np.random.default_rng(seed)
        pooled = 3 * (112 // POOL) ** 2
        return cls(rng.normal(0, 1, (pooled, EMBED)).astype(np.float32) / pooled**0.5,
                   rng.normal(0, 0.1, EMBED).astype(np.float32))

    def __call__(self, blob: np.ndarray) -> np.ndarray:
        """What the stand-in computes for a 1x3x112x112 input, in float64."""
        pooled = blob.astype(np.float64).reshape(1, 3, 7, POOL, 7, POOL).mean(axis=(3, 5)).reshape(1, -1)
        return pooled @ self.matrix + self.bias


def arcface(weights: ArcFaceWeights, *, mxnet: bool = False) -> bytes:
    graph = Graph()
    x = "input.1"
    if mxnet:  # identity arithmetic, named the way MXNet exports name their input normalisation
        x = graph.op("Sub", x, graph.const(np.zeros(1, np.float32)), node_name="_minus0")
        x = graph.op("Mul", x, graph.const(np.ones(1, np.float32)), node_name="_mul0")
    y = graph.op("AveragePool", x, kernel_shape=[POOL, POOL], strides=[POOL, POOL])
    y = graph.op("Reshape", y, graph.const(np.array([-1, weights.matrix.shape[0]], np.int64)))
    y = graph.op("MatMul", y, graph.const(weights.matrix))
    out = graph.op("Add", y, graph.const(weights.bias))
    return graph.model({"input.1": ("N", 3, 112, 112)}, {"683": ("N", EMBED)}, {out: "683"})
