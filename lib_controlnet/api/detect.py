"""POST /controlnet/detect: run a preprocessor on base64 images, as the reference's route does.

Request: {"controlnet_module", "controlnet_input_images", "controlnet_processor_res", "controlnet_threshold_a",
"controlnet_threshold_b", "controlnet_masks", "low_vram"}. Response: {"info": "Success", "images": [...]},
plus "poses" (OpenPose JSON, one per image) for the openpose family and "tensor" for data-returning modules.
The reference's error strings are kept; beyond them, every refusal is a 422 that names the field.
"""

from __future__ import annotations

import base64
import io
import logging

import numpy as np
from fastapi import APIRouter
from pydantic import BaseModel

from lib_controlnet.errors import InputError
from lib_controlnet.preprocessors import Registry, ResultCache, resolve_params, run_preprocessor

from .images import decode_image, decode_mask, encode_png

logger = logging.getLogger(__name__)

# Encoders whose output only makes sense inside a generation (the reference refuses them here too).
NOT_SUPPORTED_HERE = ("clip_vision", "revision_clipvision", "revision_ignore_prompt", "ip-adapter-auto")
PARAM_FIELDS = ("controlnet_processor_res", "controlnet_threshold_a", "controlnet_threshold_b")


class DetectRequest(BaseModel):
    controlnet_module: str = "none"
    controlnet_input_images: list[str] = []
    controlnet_processor_res: int = -1
    controlnet_threshold_a: float = -1
    controlnet_threshold_b: float = -1
    controlnet_masks: list[str] = []
    low_vram: bool = False  # accepted for compatibility; no weight-free or mediapipe module uses the GPU


def _encode_tensor(value) -> str:
    import torch  # only data-returning modules get here

    buffer = io.BytesIO()
    torch.save(value, buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _input_with_mask(preprocessor, request: DetectRequest, index: int) -> np.ndarray:
    image = decode_image(request.controlnet_input_images[index], f"controlnet_input_images[{index}]")
    if index >= len(request.controlnet_masks):
        return image
    if not preprocessor.accepts_mask:
        logger.warning("Preprocessor %s does not accept mask. Mask ignored", request.controlnet_module)
        return image
    field = f"controlnet_masks[{index}]"
    mask = decode_mask(request.controlnet_masks[index], field)
    if mask.shape != image.shape[:2]:
        raise InputError(f"image shape {image.shape[:2]} not aligned with mask shape {mask.shape}", field=field)
    return np.concatenate([image, mask[:, :, None]], axis=2)


def detect(request: DetectRequest, registry: Registry, cache: ResultCache | None) -> dict:
    module = request.controlnet_module
    preprocessor = registry.get(module)
    if preprocessor is None:
        raise InputError(f"Module not available: {module!r} is neither a preprocessor's name nor its label "
                         "(GET /controlnet/module_list lists them)", field="controlnet_module")
    if preprocessor.name in NOT_SUPPORTED_HERE:
        raise InputError("Module not supported", field="controlnet_module")
    if not request.controlnet_input_images:
        raise InputError("No image selected", field="controlnet_input_images")
    if preprocessor.requires_mask and len(request.controlnet_masks) != len(request.controlnet_input_images):
        raise InputError(f"Preprocessor {module} requires `controlnet_masks` param.", field="controlnet_masks")
    notes: list[str] = []
    params = resolve_params(preprocessor, request.controlnet_processor_res, request.controlnet_threshold_a,
                            request.controlnet_threshold_b, fields=PARAM_FIELDS, notes=notes)
    for note in notes:
        logger.warning("/controlnet/detect: %s", note)
    logger.info("Detecting %d images with the %s module.", len(request.controlnet_input_images), module)

    images, tensors, poses = [], [], []
    for index in range(len(request.controlnet_input_images)):
        detection = run_preprocessor(preprocessor, _input_with_mask(preprocessor, request, index), params,
                                     cache=cache)
        if preprocessor.returns_image:
            images.append(encode_png(detection.display))
        else:
            tensors.append(_encode_tensor(detection.map))
        if preprocessor.returns_pose:
            poses.append(detection.pose)

    response: dict = {"info": "Success"}
    if poses:
        response["poses"] = poses
    if images:
        response["images"] = images
    if tensors:
        response["tensor"] = tensors
    if notes:
        response["warnings"] = notes  # beyond the reference's shape: what was accepted but worth a word
    return response


def add_detect_route(router: APIRouter, registry: Registry, cache: ResultCache | None) -> None:
    # A plain `def`: FastAPI runs it in a worker thread, so a slow map never blocks the server's event loop.
    @router.post("/controlnet/detect")
    def detect_route(request: DetectRequest) -> dict:
        return detect(request, registry, cache)
