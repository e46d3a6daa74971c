"""torchvision's `nms` and `roi_align` operators, for TorchScript files that call them (DensePose's detector).

Where torchvision imports (A1111 ships it), its own operators are used. Otherwise (the standalone host, which
must not install torchvision: its wheels pull a CUDA torch) the two are registered here under torchvision's
names and schemas, written in plain torch with torchvision's semantics:
- nms: greedy, highest score first; a box goes when its IoU with a kept one is over the threshold; the kept
  indices by decreasing score.
- roi_align: boxes (K x 5: batch index, x1, y1, x2, y2) scaled by spatial_scale (minus half a pixel when
  aligned); each output bin averages bilinear samples on a grid of sampling_ratio x sampling_ratio points per
  bin (or ceil(box size / bins) when sampling_ratio <= 0); samples more than a pixel outside are 0, those just
  outside are clamped to the border.
"""

from __future__ import annotations

import math
import threading

import torch

_lock = threading.Lock()
_library = None  # keeps our registration alive


def _registered() -> bool:
    try:
        torch.ops.torchvision.nms  # noqa: B018 - raises when no one has defined the operator
        torch.ops.torchvision.roi_align  # noqa: B018
        return True
    except (AttributeError, RuntimeError):
        return False


def nms(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    if dets.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=dets.device)
    boxes = dets.double()
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = torch.argsort(scores, descending=True, stable=True)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool, device=dets.device)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        lt = torch.maximum(boxes[i, :2], boxes[:, :2])
        rb = torch.minimum(boxes[i, 2:], boxes[:, 2:])
        inter = (rb - lt).clamp(min=0).prod(dim=1)
        suppressed |= inter / (areas[i] + areas - inter) > iou_threshold
    return torch.tensor(keep, dtype=torch.long, device=dets.device)


def _bilinear(feature: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """C x N samples of a C x H x W map at (y, x), as torchvision's roi_align samples."""
    height, width = feature.shape[1:]
    outside = (y < -1.0) | (y > height) | (x < -1.0) | (x > width)
    y, x = y.clamp(min=0), x.clamp(min=0)
    y_low, x_low = y.floor().long(), x.floor().long()
    at_bottom, at_right = y_low >= height - 1, x_low >= width - 1
    y_low, x_low = torch.where(at_bottom, height - 1, y_low), torch.where(at_right, width - 1, x_low)
    y_high, x_high = torch.where(at_bottom, y_low, y_low + 1), torch.where(at_right, x_low, x_low + 1)
    y, x = torch.where(at_bottom, y_low.to(y.dtype), y), torch.where(at_right, x_low.to(x.dtype), x)
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    value = (feature[:, y_low, x_low] * (hy * hx) + feature[:, y_low, x_high] * (hy * lx)
             + feature[:, y_high, x_low] * (ly * hx) + feature[:, y_high, x_high] * (ly * lx))
    return torch.where(outside, torch.zeros_like(value), value)


def roi_align(features: torch.Tensor, rois: torch.Tensor, spatial_scale: float, pooled_height: int,
              pooled_width: int, sampling_ratio: int, aligned: bool) -> torch.Tensor:
    out = features.new_zeros(len(rois), features.shape[1], pooled_height, pooled_width)
    offset = 0.5 if aligned else 0.0
    for k, roi in enumerate(rois.tolist()):
        batch, x1, y1, x2, y2 = int(roi[0]), *roi[1:]
        start_w, start_h = x1 * spatial_scale - offset, y1 * spatial_scale - offset
        width, height = x2 * spatial_scale - offset - start_w, y2 * spatial_scale - offset - start_h
        if not aligned:
            width, height = max(width, 1.0), max(height, 1.0)
        bin_h, bin_w = height / pooled_height, width / pooled_width
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(height / pooled_height)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(width / pooled_width)
        count = max(grid_h * grid_w, 1)
        if grid_h <= 0 or grid_w <= 0:
            continue
        dtype, device = features.dtype, features.device
        ys = (start_h + torch.arange(pooled_height, dtype=dtype, device=device)[:, None] * bin_h
              + (torch.arange(grid_h, dtype=dtype, device=device)[None, :] + 0.5) * bin_h / grid_h).reshape(-1)
        xs = (start_w + torch.arange(pooled_width, dtype=dtype, device=device)[:, None] * bin_w
              + (torch.arange(grid_w, dtype=dtype, device=device)[None, :] + 0.5) * bin_w / grid_w).reshape(-1)
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        samples = _bilinear(features[batch], yy.reshape(-1), xx.reshape(-1))
        samples = samples.view(-1, pooled_height, grid_h, pooled_width, grid_w)
        out[k] = samples.sum(dim=(2, 4)) / count
    return out


def ensure_torchvision_ops() -> str:
    """Make torch.ops.torchvision.{nms, roi_align} callable; returns who provides them."""
    global _library
    with _lock:
        if _registered():
            return "torchvision" if _library is None else "ours"
        try:
            import torchvision  # noqa: F401 - registers its operators
            if _registered():
                return "torchvision"
        except Exception:  # not installed, or a build that does not load with this torch
            pass
        library = torch.library.Library("torchvision", "DEF")
        library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.define("roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
                       "SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor")
        library.impl("nms", nms, "CompositeExplicitAutograd")
        library.impl("roi_align", roi_align, "CompositeExplicitAutograd")
        _library = library
        return "ours"
