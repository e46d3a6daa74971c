"""Published ONNX networks (DWPose's detector and pose models), run by onnxruntime on the CPU.

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
        options = ort.SessionOptions()
        if INTRA_OP_THREADS:
            options.intra_op_num_threads = INTRA_OP_THREADS
        options.log_severity_level = 3  # errors only
        try:
            session = ort.InferenceSession(path.read_bytes(), sess_options=options,
                                           providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for a bad graph
            raise ModelFileError(f"{path.name} is not a readable ONNX model ({str(exc).splitlines()[0]}). "
                                 f"Use the published file: {self.weight.url()}", field="module") from exc
        net = OnnxNet(session, self.title)
        self._check(net, path.name)
        return net

    def _check(self, net: OnnxNet, name: str) -> None:
        found = ([_shape(i.shape) for i in net.session.get_inputs()],
                 [_shape(o.shape) for o in net.session.get_outputs()])
        wanted = (list(self.inputs), list(self.outputs))
        if not (_fits(found[0], wanted[0]) and _fits(found[1], wanted[1])):
            raise ModelFileError(
                f"{name} does not hold the {self.title} network: its inputs/outputs have the shapes {found[0]} -> "
                f"{found[1]}, where {wanted[0]} -> {wanted[1]} are expected. Use the published file: "
                f"{self.weight.url()}", field="module")


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
