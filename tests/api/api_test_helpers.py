"""Helpers shared by the API tests: base64 images and a test app with the /controlnet routes mounted."""

from __future__ import annotations

import base64
import io

import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from lib_controlnet.api import create_router
from lib_controlnet.preprocessors import ResultCache, default_registry


def to_b64(array: np.ndarray, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def from_b64(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))


def make_client(registry=None) -> TestClient:
    app = FastAPI()
    app.include_router(create_router(registry or default_registry(), ResultCache()))
    return TestClient(app)
