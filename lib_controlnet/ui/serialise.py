"""A unit as the JSON an API client sends (`alwayson_scripts.controlnet.args[i]`): images as base64 PNG.

`Unit.from_dict(api_payload(unit))` is the same unit again, its images decoded by `image_input` to the same
pixels: the panel's state, the API and the standalone host share this one serialisation.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np
from PIL import Image

from lib_controlnet.units.unit import Unit

IMAGE_FIELDS = ("image", "mask", "effective_region_mask")


def png_base64(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return png_base64(value)
    if hasattr(value, "getbands"):  # a PIL image
        return png_base64(np.asarray(value))
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def api_payload(unit: Unit) -> dict[str, Any]:
    """`unit.to_dict()` with every image encoded: plain JSON."""
    payload = unit.to_dict()
    for name in IMAGE_FIELDS:
        payload[name] = _encode(payload[name])
    return payload


def _shown(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        channels = value.shape[2] if value.ndim == 3 else 1
        return f"<image {value.shape[1]}x{value.shape[0]}x{channels}, sent as base64 PNG>"
    if hasattr(value, "getbands"):
        return f"<image {value.size[0]}x{value.size[1]} {value.mode}, sent as base64 PNG>"
    if isinstance(value, str) and len(value) > 120:
        return f"<base64, {len(value)} characters>"
    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_shown(v) for v in value]
    return value


def display_json(state: Unit | dict | None) -> str:
    """The unit's API JSON for showing, images replaced by their size (`api_payload` has the real thing)."""
    if state is None:
        return "null"
    payload = state.to_dict() if isinstance(state, Unit) else dict(state)
    return json.dumps({k: _shown(v) for k, v in payload.items()}, indent=1, default=str)
