"""Writing small ONNX models for tests, without the `onnx` package.

The `onnx` wheels that have Python 3.11 builds need protobuf >= 3.20.2, and the test environment mirrors
A1111's protobuf 3.20.0 (mediapipe needs < 4), so we encode the few ModelProto fields a graph needs with the
protobuf wire format directly (field numbers from onnx/onnx.proto). onnxruntime then parses and checks them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

FLOAT, INT64 = 1, 7  # TensorProto.DataType
ATTR_FLOAT, ATTR_INT, ATTR_INTS = 1, 2, 7  # AttributeProto.AttributeType


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 as two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _int(number: int, value: int) -> bytes:
    return _key(number, 0) + _varint(value)


def _bytes(number: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _key(number, 2) + _varint(len(data)) + data


def _float(number: int, value: float) -> bytes:
    return _key(number, 5) + struct.pack("<f", value)


def tensor(name: str, array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array)
    dtype = {np.dtype(np.float32): FLOAT, np.dtype(np.int64): INT64}[array.dtype]
    body = b"".join(_int(1, d) for d in array.shape) + _int(2, dtype) + _bytes(8, name)
    return body + _bytes(9, array.tobytes())


def _value_info(name: str, shape: tuple) -> bytes:
    dims = b"".join(_bytes(1, _int(1, d) if isinstance(d, int) else _bytes(2, d)) for d in shape)
    tensor_type = _int(1, FLOAT) + _bytes(2, dims)
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor_type))


def _attribute(name: str, value) -> bytes:
    if isinstance(value, float):
        return _bytes(1, name) + _float(2, value) + _int(20, ATTR_FLOAT)
    if isinstance(value, int):
        return _bytes(1, name) + _int(3, value) + _int(20, ATTR_INT)
    return _bytes(1, name) + b"".join(_int(8, v) for v in value) + _int(20, ATTR_INTS)


@dataclass
class Graph:
    """Nodes added in order; `initializer` names constants (weights, shapes)."""

    nodes: list[bytes] = field(default_factory=list)
    initializers: list[bytes] = field(default_factory=list)
    _count: int = 0

    def const(self, array: np.ndarray) -> str:
        self._count += 1
        name = f"c{self._count}"
        self.initializers.append(tensor(name, array))
        return name

    def op(self, op_type: str, *inputs: str, node_name: str | None = None, **attributes) -> str:
        self._count += 1
        out = f"t{self._count}"
        body = b"".join(_bytes(1, i) for i in inputs) + _bytes(2, out) + _bytes(3, node_name or f"n{self._count}")
        body += _bytes(4, op_type) + b"".join(_bytes(5, _attribute(k, v)) for k, v in attributes.items())
        self.nodes.append(body)
        return out

    def model(self, inputs: dict[str, tuple], outputs: dict[str, tuple], renames: dict[str, str],
              opset: int = 13) -> bytes:
        """ModelProto bytes; `renames` maps internal tensor names to the graph's output names."""
        nodes = list(self.nodes)
        for internal, public in renames.items():
            nodes.append(_bytes(1, internal) + _bytes(2, public) + _bytes(4, "Identity"))
        graph = b"".join(_bytes(1, n) for n in nodes) + _bytes(2, "test")
        graph += b"".join(_bytes(5, t) for t in self.initializers)
        graph += b"".join(_bytes(11, _value_info(n, s)) for n, s in inputs.items())
        graph += b"".join(_bytes(12, _value_info(n, s)) for n, s in outputs.items())
        opset_import = _bytes(1, "") + _int(2, opset)
        return _int(1, 8) + _bytes(2, "controlnet-tests") + _bytes(7, graph) + _bytes(8, opset_import)


def conv(graph: Graph, x: str, weight: np.ndarray, bias: np.ndarray, stride: int) -> str:
    return graph.op("Conv", x, graph.const(weight), graph.const(bias), strides=[stride, stride])


def reshape(graph: Graph, x: str, shape: tuple[int, ...]) -> str:
    return graph.op("Reshape", x, graph.const(np.array(shape, dtype=np.int64)))
