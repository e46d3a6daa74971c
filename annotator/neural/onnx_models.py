"""Published ONNX networks (DWPose's detector and pose models, insightface's SCRFD and ArcFace), run by
onnxruntime on the CPU.

onnxruntime is optional: without it these modules answer 501 with the install command. An ONNX file is a
protobuf graph of standard operators and their weights; loading one runs no code from the file. The file is
read by us and handed to onnxruntime as bytes, so a graph that names "external data" files cannot make it
read other files. Each network's input and output shapes are checked against the published ones, and a file
that differs is refused (422) saying what it has.

Sessions are cached like the torch networks (`AnnotatorModels`: LRU, reloaded when the file changes); they
always run on the CPU (as the reference's do: its ONNX models never touch the GPU).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lib_controlnet.errors import MissingDependencyError, ModelFileError

from .weights import WeightFile

ONNXRUNTIME = "onnxruntime==1.23.2"  # the CPU build; also works with protobuf 3.20 and numpy 1.26 (A1111's)
# Session threads: None lets onnxruntime use every core, as torch does.
INTRA_OP_THREADS: int | None = None


def onnxruntime(feature: str):
    try:
        import onnxruntime as ort
    except Exception as exc:  # ImportError, or a broken install
        raise MissingDependencyError(
            f"{feature} needs the onnxruntime package, which could not be imported ({exc}); "
            f"install it with: pip install {ONNXRUNTIME}", field="module") from exc
    return ort


Shape = tuple  # ints, or None for a dimension the file may leave free (batch)


@dataclass(frozen=True)
class OnnxSpec:
    """A published ONNX network: its file and the shapes of its inputs and outputs."""

    title: str
    weight: WeightFile
    inputs: Sequence[Shape]
    outputs: Sequence[Shape]

    def load(self, path: str | os.PathLike) -> OnnxNet:
        ort = onnxruntime(self.title)
        path = Path(path)
        data = path.read_bytes()
        options = ort.SessionOptions()
        if INTRA_OP_THREADS:
            options.intra_op_num_threads = INTRA_OP_THREADS
        options.log_severity_level = 3  # errors only
        try:
            session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for a bad graph
            raise ModelFileError(f"{path.name} is not a readable ONNX model ({str(exc).splitlines()[0]}). "
                                 f"Use the published file: {self.weight.url()}", field="module") from exc
        net = self.wrap(session, data)
        self._check(net, path.name)
        return net

    def wrap(self, session, data: bytes) -> OnnxNet:
        """The net around a parsed session (`data`: the file's bytes, for specs that read more of the graph)."""
        return OnnxNet(session, self.title)

    def _check(self, net: OnnxNet, name: str) -> None:
        found = signature(net.session)
        wanted = (list(self.inputs), list(self.outputs))
        if not (_fits(found[0], wanted[0]) and _fits(found[1], wanted[1])):
            self.refuse(name, found, f"{wanted[0]} -> {wanted[1]} are expected")

    def refuse(self, name: str, found: tuple[list, list], expected: str):
        raise ModelFileError(
            f"{name} does not hold the {self.title} network: its inputs/outputs have the shapes {found[0]} -> "
            f"{found[1]}, where {expected}. Use the published file: {self.weight.url()}", field="module")


def signature(session) -> tuple[list[tuple], list[tuple]]:
    """([input shapes], [output shapes]) of a session, a free dimension as None."""
    return [_shape(i.shape) for i in session.get_inputs()], [_shape(o.shape) for o in session.get_outputs()]


def _shape(dims) -> tuple:
    return tuple(d if isinstance(d, int) else None for d in dims)


def _fits(found: list[tuple], wanted: list[tuple]) -> bool:
    return len(found) == len(wanted) and all(
        len(f) == len(w) and all(a is None or b is None or a == b for a, b in zip(f, w))
        for f, w in zip(found, wanted))


class OnnxNet:
    """One onnxruntime session; `.to()` is there for the model cache (it never leaves the CPU)."""

    def __init__(self, session, title: str):
        self.session = session
        self.title = title
        self._input = session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self._input: np.ascontiguousarray(x, dtype=np.float32)})

    def to(self, *args, **kwargs) -> OnnxNet:
        return self


# --- reading node names from the protobuf (no `onnx` package: it needs protobuf >= 3.20.2, A1111 has 3.20.0) ---
def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(data: bytes, start: int = 0, end: int | None = None):
    """(field number, wire type, value or (start, end) of a length-delimited one) of one protobuf message."""
    pos, end = start, len(data) if end is None else end
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 5:
            value, pos = None, pos + 4
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = (pos, pos + length), pos + length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise ValueError("truncated protobuf field")
        yield number, wire, value


MODEL_GRAPH, GRAPH_NODE, NODE_NAME = 7, 1, 3  # ModelProto.graph, GraphProto.node, NodeProto.name (onnx.proto)


def first_node_names(data: bytes, count: int) -> list[str]:
    """The names of the graph's first `count` nodes, in graph order (what insightface looks at to tell an
    MXNet-exported ArcFace, which normalises inside the graph, from a PyTorch one)."""
    names: list[str] = []
    for number, wire, span in _fields(data):
        if number != MODEL_GRAPH or wire != 2:
            continue
        for g_number, g_wire, node in _fields(data, *span):
            if g_number != GRAPH_NODE or g_wire != 2:
                continue
            name = ""
            for n_number, n_wire, value in _fields(data, *node):
                if n_number == NODE_NAME and n_wire == 2:
                    name = data[value[0]:value[1]].decode("utf-8", "replace")
            names.append(name)
            if len(names) == count:
                return names
    return names
