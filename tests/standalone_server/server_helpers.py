"""Payloads and decoders for the server tests: 64x64 images, 3 steps, the demo ControlNet."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
from PIL import Image

CONTROLNET = "demo-random-weights-controlnet-sd15"  # resolved by stem, as the reference resolves names


def png_b64(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def square(size: int = 64, value: int = 255) -> np.ndarray:
    """A bright square on black: canny finds its edges."""
    image = np.zeros((size, size, 3), np.uint8)
    image[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = value
    return image


def gradient(size: int = 64) -> np.ndarray:
    ramp = np.linspace(0, 255, size, dtype=np.uint8)
    return np.dstack([np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size)), np.full((size, size), 90, np.uint8)])


def unit(**fields) -> dict:
    base = {"enabled": True, "module": "canny", "model": CONTROLNET, "image": png_b64(square())}
    base.update(fields)
    return base


def body(*units, **fields) -> dict:
    base = {"prompt": "a cat", "negative_prompt": "blurry", "steps": 3, "width": 64, "height": 64, "seed": 1234,
            "sampler_name": "Euler", "cfg_scale": 7}
    if units:
        base["alwayson_scripts"] = {"controlnet": {"args": list(units)}}
    base.update(fields)
    return base


def decode(text: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text)))
    image.load()
    return image


def pixels(text: str) -> np.ndarray:
    return np.asarray(decode(text).convert("RGB"))


def info(response_json: dict) -> dict:
    return json.loads(response_json["info"])


def ok(response) -> dict:
    assert response.status_code == 200, response.text[:2000]
    return response.json()
