"""Real images and encoders shared by the tests of the host-neutral unit pieces."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image
from skimage import data


def astronaut() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut())  # 512x512x3 uint8, a real photo


def encode(array: np.ndarray, fmt: str = "PNG", **kwargs) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **kwargs)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_png(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))
