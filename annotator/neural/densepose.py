"""densepose and densepose_parula: DensePose R50-FPN-DL (densepose_r50_fpn_dl.torchscript, published by
LayerNorm/DensePose-TorchScript-with-hint-image as a TorchScript export of the whole detectron2 predictor), each
person's body-part index map painted with a colour map.

The file is a program, not a state dict: it holds the detector (ResNet-50 FPN, RPN, box head, NMS) and the
DensePose DeepLab head with their pre- and post-processing, and returns, per detected person, its box and chart
outputs (coarse and fine segmentation, U, V). Re-implementing detectron2's whole predictor to read its weights
instead is out of proportion, so we run the file - but only after `torchscript_audit` has checked that it is
pure tensor code (no file or network operators, no TorchBind classes); it is never unpickled by Python, and
`torch.load` is never used on it. Its torchvision operators (nms, roi_align) come from torchvision or, where
that is absent, from `torchvision_ops`.

Post-processing as the reference's: per person, the fine segmentation's argmax where the coarse one says
"body", resampled (bilinear) to the box; the part index 0..24 scaled by 255/24, coloured (OpenCV's VIRIDIS or
PARULA), drawn in detection order on black (background pixels of a box keep what is under them). VIRIDIS maps
then take the reference's fix-up: in each channel a 0 becomes viridis(0) (68, 1, 84), which turns the black
background purple. The image is padded to a multiple of 64 and the map cropped back, as the reference does.

Difference: the reference feeds the network RGB, but detectron2's predictor (and so this export, made from
cv2-read images) takes BGR; we give it BGR.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from lib_controlnet.errors import ModelFileError

from ..util import hwc3, resize_short_side
from .runtime import AnnotatorModels, default_models
from .torchscript_audit import audit_torchscript
from .torchvision_ops import ensure_torchvision_ops
from .uniformer import pad_to
from .weights import WeightFile

PARTS = 24
VIRIDIS_ZERO = (68, 1, 84)  # RGB of viridis(0), the reference's background colour


@dataclass(frozen=True)
class TorchScriptSpec:
    title: str
    weight: WeightFile
    outputs: int

    def load(self, path: str | os.PathLike) -> torch.jit.ScriptModule:
        path = Path(path)
        audit_torchscript(path)
        ensure_torchvision_ops()
        try:
            net = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # torch raises RuntimeError, or its own errors, for what it cannot compile
            raise ModelFileError(f"{path.name} is not a loadable TorchScript model ({str(exc).splitlines()[0]}). "
                                 f"Use the published file: {self.weight.url()}", field="module") from exc
        schema = net.forward.schema
        returns = str(schema.returns[0].type) if schema.returns else ""
        if len(schema.arguments) != 2 or returns.count("Tensor") != self.outputs:
            raise ModelFileError(f"{path.name} does not hold the {self.title} network: its forward is {schema}, "
                                 f"where one image in and {self.outputs} tensors out are expected. Use the "
                                 f"published file: {self.weight.url()}", field="module")
        return net.eval()


DENSEPOSE = TorchScriptSpec(
    "DensePose R50-FPN-DL",
    WeightFile(("densepose_r50_fpn_dl.torchscript",), "densepose",
               repo="https://huggingface.co/LayerNorm/DensePose-TorchScript-with-hint-image"),
    outputs=5)


def part_labels(box_xywh: tuple[int, int, int, int], coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
    """h x w part indices (0 = not body) of one person resampled to its box."""
    _, _, w, h = box_xywh
    size = (max(h, 1), max(w, 1))
    body = F.interpolate(coarse, size, mode="bilinear", align_corners=False).argmax(dim=1) > 0
    return (F.interpolate(fine, size, mode="bilinear", align_corners=False).argmax(dim=1) * body.long())[0]


def int_box(box: torch.Tensor) -> tuple[int, int, int, int]:
    """(x, y, w, h) truncated to ints, from an xyxy box (w and h taken before truncating, as the reference)."""
    x1, y1, x2, y2 = box.tolist()
    return int(x1), int(y1), int(x2 - x1), int(y2 - y1)


def paint(canvas_bgr: np.ndarray, box: tuple[int, int, int, int], labels: np.ndarray, colormap: int) -> None:
    x, y, w, h = box
    if w <= 0 or h <= 0:
        return
    colours = cv2.applyColorMap((labels.astype(np.float32) * (255.0 / PARTS)).clip(0, 255).astype(np.uint8),
                                colormap)
    region = canvas_bgr[y:y + h, x:x + w]
    background = labels[:region.shape[0], :region.shape[1]] == 0
    colours = colours[:region.shape[0], :region.shape[1]]
    region[~background] = colours[~background]


def densepose_map(outputs, height: int, width: int, cmap: str) -> np.ndarray:
    boxes, coarse, fine = outputs[0], outputs[1], outputs[2]
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    colormap = cv2.COLORMAP_VIRIDIS if cmap == "viridis" else cv2.COLORMAP_PARULA
    for i in range(len(boxes)):
        box = int_box(boxes[i])
        labels = part_labels(box, coarse[i:i + 1].float(), fine[i:i + 1].float()).cpu().numpy()
        paint(canvas, box, labels, colormap)
    rgb = canvas[:, :, ::-1].copy()
    if cmap == "viridis":
        for channel, value in enumerate(VIRIDIS_ZERO):
            rgb[:, :, channel][rgb[:, :, channel] == 0] = value
    return rgb


def densepose(image: np.ndarray, resolution: float, cmap: str = "viridis",
              models: AnnotatorModels | None = None) -> np.ndarray:
    models = default_models() if models is None else models
    img = resize_short_side(hwc3(image), resolution)
    height, width = img.shape[:2]
    padded = pad_to(img)
    net = models.get(DENSEPOSE)
    # Moved without a dtype (the program may rely on its own), to the compute device for the call only.
    with models.lock, torch.inference_mode():
        net.to(models.device)
        try:
            bgr = torch.from_numpy(np.ascontiguousarray(padded[:, :, ::-1].transpose(2, 0, 1))).to(models.device)
            outputs = [o.cpu() for o in net(bgr)]
        finally:
            net.to("cpu")
    return np.ascontiguousarray(densepose_map(outputs, *padded.shape[:2], cmap)[:height, :width])


def densepose_parula(image: np.ndarray, resolution: float, models: AnnotatorModels | None = None) -> np.ndarray:
    return densepose(image, resolution, "parula", models)
