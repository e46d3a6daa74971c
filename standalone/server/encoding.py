"""Images out of the API: base64 PNG without a data-URI prefix, as A1111's encode_pil_to_base64 writes them
(with the infotext in the PNG's "parameters" text chunk for generated images)."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image, PngImagePlugin

PARAMETERS_KEY = "parameters"  # A1111's PNG text chunk for the generation parameters


def png_base64(image: Image.Image | np.ndarray, parameters: str | None = None) -> str:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    info = None
    if parameters is not None:
        info = PngImagePlugin.PngInfo()
        info.add_text(PARAMETERS_KEY, parameters)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
