"""Small ONNX stand-ins for the published DWPose files, with their input and output signatures.

Each is a real onnxruntime graph: a strided convolution of the image (random weights), pooled to a few
numbers per output row, plus a designed constant, so that tests can place detections and keypoints where they
want them (`scale` sets how much the image moves them; tiny by default, so argmaxes stay where designed).
"""

from __future__ import annotations

import numpy as np
from onnx_builder import Graph, conv, reshape

from annotator.neural import dwpose


def _image_term(graph: Graph, x: str, rng, rows: int, cols_shape: tuple[int, ...], kernel: int, scale: float):
    """conv(x) pooled to one value per row, times `scale`, broadcast over the columns: rows x cols."""
    weight = rng.normal(0, 1, (rows, 3, kernel, kernel)).astype(np.float32) / kernel
    y = conv(graph, x, weight, np.zeros(rows, np.float32), kernel)
    y = graph.op("GlobalAveragePool", y)  # 1 x rows x 1 x 1
    y = reshape(graph, y, (1, rows) + (1,) * len(cols_shape))
    return graph.op("Mul", y, graph.const(np.full((1, rows) + cols_shape, scale, np.float32)))


def detector(raw: np.ndarray, seed: int = 0, scale: float = 1e-6) -> bytes:
    """yolox_l.onnx's signature: images 1x3x640x640 -> 1x8400x85, equal to `raw` (8400 x 85) plus scale x an
    image term."""
    graph, rng = Graph(), np.random.default_rng(seed)
    anchors = raw.shape[0]
    term = _image_term(graph, "images", rng, anchors // 100, (100, 85), 64, scale)  # 84 x 100 x 85
    term = reshape(graph, term, (1, anchors, 85))
    out = graph.op("Add", term, graph.const(raw[None].astype(np.float32)))
    size = dwpose.DETECTOR_SIZE
    return graph.model({"images": (1, 3, size, size)}, {"output": (1, anchors, 85)}, {out: "output"})


def pose_model(simcc_x: np.ndarray, simcc_y: np.ndarray, input_size: tuple[int, int], seed: int = 0,
               scale: float = 1e-6) -> bytes:
    """A top-down SimCC model's signature: input 1x3xHxW -> simcc_x 1xKx2W, simcc_y 1xKx2H, equal to the given
    K x 2W and K x 2H arrays plus scale x an image term."""
    graph, rng = Graph(), np.random.default_rng(seed)
    width, height = input_size
    points = simcc_x.shape[0]
    outputs = {}
    for name, designed in (("simcc_x", simcc_x), ("simcc_y", simcc_y)):
        term = _image_term(graph, "input", rng, points, (designed.shape[1],), 32, scale)
        outputs[graph.op("Add", term, graph.const(designed[None].astype(np.float32)))] = name
    shapes = {"simcc_x": (1, points, simcc_x.shape[1]), "simcc_y": (1, points, simcc_y.shape[1])}
    return graph.model({"input": (1, 3, height, width)}, shapes, outputs)


def detector_raw(boxes_in_network_px: list[tuple[float, float, float, float]], classes: list[int],
                 score: float = 0.9) -> np.ndarray:
    """An 8400 x 85 YOLOX output with one anchor per box (at stride 32, in the cell holding the box centre)
    scoring `score`; every other anchor has objectness 0."""
    raw = np.zeros((dwpose._anchors(), 85), np.float32)
    first_32 = sum((dwpose.DETECTOR_SIZE // s) ** 2 for s in (8, 16))
    side = dwpose.DETECTOR_SIZE // 32
    for (x1, y1, x2, y2), cls in zip(boxes_in_network_px, classes):
        cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
        gx, gy = int(cx // 32), int(cy // 32)
        row = raw[first_32 + gy * side + gx]
        row[:4] = (cx / 32 - gx, cy / 32 - gy, np.log(w / 32), np.log(h / 32))
        row[4] = score
        row[5 + cls] = score
    return raw
