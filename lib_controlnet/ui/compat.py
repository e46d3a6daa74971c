"""The few places where gradio 3.41 (A1111 1.9/1.10) and gradio 4.x (Forge) differ, in one module.

The panel calls these instead of gradio where the two disagree:
* the control image with a drawable mask: `gr.Image(source="upload", tool="sketch")` on 3.x, `gr.ImageEditor`
  on 4.x, each with its own value shape; `image_and_mask` reads either into (RGB, mask);
* the JavaScript hook on events: `_js=` on 3.x, `js=` on 4.x.
Everything else the panel uses (`gr.update`, `gr.Group`, `gr.Tabs`, events) is common to both.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np

GRADIO_MAJOR = int(gr.__version__.split(".")[0])
IS_GRADIO_4 = GRADIO_MAJOR >= 4


def js_kwargs(js: str) -> dict[str, str]:
    """The event keyword that runs `js` in the browser."""
    return {"js": js} if IS_GRADIO_4 else {"_js": js}


class _SketchImage(gr.Image):
    """gradio 3.x's sketch image, tolerating the value its frontend sends right after an upload, before the
    mask canvas exists (`{"image": ..., "mask": None}`), on which gr.Image.preprocess raises AttributeError."""

    def get_block_name(self) -> str:
        return "image"  # the frontend component to render (gradio names it after the class otherwise)

    def preprocess(self, x):
        if isinstance(x, dict) and x.get("image") and not x.get("mask"):
            image = super().preprocess({"image": x["image"], "mask": x["image"]})["image"]
            return {"image": image, "mask": None}
        return super().preprocess(x)


def mask_image(**kwargs) -> gr.components.Component:
    """An uploadable image the user can draw a mask (or a scribble) on; its value is read by `image_and_mask`."""
    if IS_GRADIO_4:
        kwargs.pop("brush_radius", None)
        return gr.ImageEditor(type="numpy", sources=["upload", "clipboard"], image_mode="RGBA", **kwargs)
    return _SketchImage(source="upload", tool="sketch", type="numpy", **kwargs)


def image_value_events(component) -> list:
    """The events after which the mask image's value is new.

    gradio 3.41's sketch image re-fires `change` many times a second on its own once an image is loaded (its
    value is an object, and every property update of the component re-triggers its change statement), so
    there the panel listens to `upload`, `edit` (a stroke, and the mask canvas being set up) and `clear`.
    Values set by the server do not fire these; the panel stores those itself.
    """
    if IS_GRADIO_4:
        return [component.change]
    return [component.upload, component.edit, component.clear]


def plain_image(**kwargs) -> gr.Image:
    """A display-only image (the preprocessor preview)."""
    return gr.Image(type="numpy", interactive=False, **kwargs)


def image_and_mask(value: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(HxWx3 uint8 image, HxW uint8 mask or None when nothing is drawn) from any version's value.

    gradio 3.x sketch: {"image": HxWx3, "mask": HxWx3 (white strokes on black)}; an array when the server set it.
    gradio 4.x editor: {"background": HxWx4, "layers": [HxWx4, ...], "composite": HxWx4}; drawn layers' alpha
    is the mask.
    """
    if value is None:
        return None, None
    if isinstance(value, np.ndarray):
        return _rgb(value), None
    if not isinstance(value, dict):
        raise TypeError(f"unexpected image value {type(value).__name__}")
    if "background" in value or "layers" in value:  # gradio 4 ImageEditor
        background = value.get("background")
        if background is None:
            return None, None
        mask = None
        for layer in value.get("layers") or []:
            if layer is None:
                continue
            alpha = layer[:, :, 3] if layer.ndim == 3 and layer.shape[2] == 4 else _rgb(layer)[:, :, 0]
            mask = alpha if mask is None else np.maximum(mask, alpha)
        return _rgb(background), _nonempty(mask)
    image = value.get("image")
    if image is None:
        return None, None
    mask = value.get("mask")
    if mask is not None:
        mask = mask[:, :, 0] if mask.ndim == 3 else mask
    return _rgb(image), _nonempty(mask)


def _rgb(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    if array.ndim == 2:
        return np.ascontiguousarray(np.repeat(array[:, :, None], 3, axis=2))
    if array.shape[2] == 4:  # composite over white, as the unit's image reader does
        alpha = array[:, :, 3:4].astype(np.float32) / 255.0
        mixed = array[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return np.clip(np.round(mixed), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array[:, :, :3])


def _nonempty(mask: np.ndarray | None) -> np.ndarray | None:
    if mask is None or not mask.any():
        return None
    return np.ascontiguousarray(mask.astype(np.uint8))
