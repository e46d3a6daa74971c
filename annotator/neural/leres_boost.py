"""depth_leres++: Miangoleh et al.'s "Boosting Monocular Depth" around LeReS, as the reference runs it
(thygate's port, with its constants: receptive field 448, patches at 896, merging at 1024, R_max 1600).

1. Find R_20, the largest resolution at which at most 20% of the image lies farther than the receptive field
   from an edge (a gradient-map dilation test at 1/32 scale).
2. Estimate at 448 and at R_20 and merge the two with the pix2pix merge network: the whole-image estimate.
3. Unless R_20 exceeds the image's long side, refine it with patches: a grid of 896-pixel windows over the
   image enlarged to 2 R_20 / factor, kept where the gradient density beats the image's, grown while it still
   does, each estimated twice, merged, fitted linearly to the base estimate and blended in with a Gaussian
   mask, largest patch first.

`estimate(img, w, h)` is one LeReS pass at w x h returned at the image's size; `merge(x)` the merge network
on a 1 x 2 x 1024 x 1024 tensor in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import cv2
import numpy as np
import torch

RECEPTIVE_FIELD = 448
PATCH_SIZE = 2 * RECEPTIVE_FIELD
MERGE_SIZE = 1024
WHOLE_SIZE_THRESHOLD = 1600  # R_max
CONFIDENCE = 0.2  # the x of R_x
SCALE_THRESHOLD = 3  # at most this much upscaling
SPEED_SCALE = 32  # R_x is searched on a 1/32 scale
MASK_SIZE = 3000

Estimate = Callable[[np.ndarray, int, int], np.ndarray]
Merge = Callable[[torch.Tensor], torch.Tensor]


def rgb2gray(rgb: np.ndarray) -> np.ndarray:
    return np.dot(rgb[..., :3], [0.2989, 0.5870, 0.1140])


def gradient(img: np.ndarray) -> np.ndarray:
    gray = rgb2gray(img)
    return np.abs(cv2.Sobel(gray, cv2.CV_64F, 0, 1, ksize=3)) + np.abs(cv2.Sobel(gray, cv2.CV_64F, 1, 0, ksize=3))


def max_pool_blocks(x: np.ndarray, size: int) -> np.ndarray:
    """The maximum of every n x n block, n = side // size, the last blocks padded with zeros (block_reduce)."""
    n = int(np.floor(x.shape[0] / size))
    rows, cols = -(-x.shape[0] // n), -(-x.shape[1] // n)
    padded = np.zeros((rows * n, cols * n), x.dtype)
    padded[:x.shape[0], :x.shape[1]] = x
    return padded.reshape(rows, n, cols, n).max(axis=(1, 3))


def processing_resolution(img: np.ndarray, base: int = RECEPTIVE_FIELD) -> tuple[int, float]:
    """(R_x, the share of the image near edges at R_x's scale, which sets the patch search step)."""
    side = int(min(img.shape[:2]))
    edges = cv2.resize(gradient(img), (side, side))  # bilinear: the reference's INTER_AREA lands in `dst`
    low, high = edges.min(), edges.max()
    edges = (edges >= low + 0.4 * (high - low)).astype(np.float64)
    kernel = np.ones((base // SPEED_SCALE, base // SPEED_SCALE))
    small_kernel = np.ones((int(base / (4 * SPEED_SCALE)),) * 2)
    limit = min(WHOLE_SIZE_THRESHOLD, SCALE_THRESHOLD * max(img.shape[:2]))
    best = base // SPEED_SCALE
    pooled = None
    for size in range(base // SPEED_SCALE, int(limit / SPEED_SCALE), base // (2 * SPEED_SCALE)):
        pooled = cv2.resize(max_pool_blocks(edges, size), (size, size))  # bilinear, as in the reference
        pooled = (pooled >= 0.5).astype(np.float64)
        if (1 - cv2.dilate(pooled, kernel, iterations=1)).mean() > CONFIDENCE:
            break
        best = size
    if pooled is None:  # an image too small for the search (the reference fails here): R_x = the base size
        pooled = (cv2.resize(max_pool_blocks(edges, best), (best, best)) >= 0.5).astype(np.float64)
    return int(best * SPEED_SCALE), float(cv2.dilate(pooled, small_kernel, iterations=1).mean())


def _unit(x: torch.Tensor) -> torch.Tensor:
    low, high = x.min(), x.max()
    return (x - low) / (high - low) if high > low else torch.zeros_like(x)


def merged(outer: np.ndarray, inner: np.ndarray, merge: Merge) -> np.ndarray:
    """The merge network's output in [0, 1] for two estimates (each min-max normalised to [-1, 1] first)."""
    pair = torch.cat([_unit(torch.from_numpy(np.ascontiguousarray(e, np.float32)))[None, None] * 2 - 1
                      for e in (outer, inner)], dim=1)
    return ((merge(pair) + 1) / 2)[0, 0]


def double_estimate(img: np.ndarray, low: int, high: int, estimate: Estimate, merge: Merge) -> np.ndarray:
    """MERGE_SIZE^2 float32 in [0, 1]: the low- and high-resolution estimates merged, min-max normalised."""
    pair = [cv2.resize(estimate(img, size, size), (MERGE_SIZE, MERGE_SIZE), interpolation=cv2.INTER_CUBIC)
            for size in (low, high)]
    return _unit(merged(pair[0], pair[1], merge)).numpy()


def gaussian_mask(size: int) -> np.ndarray:
    """size^2 float32: 1 inside a 15% margin, Gaussian-blurred (sigma size/16), min-max normalised. The square
    is separable, so its blur is the outer product of one blurred row (the reference blurs all 3000^2 pixels
    on every call, seconds of work for the same mask up to float rounding)."""
    row = np.zeros((1, size), np.float32)
    margin = int(0.15 * size)
    row[0, margin:size - margin] = 1
    sigma = int(size / 16)
    kernel = cv2.getGaussianKernel(int(2 * np.ceil(2 * sigma) + 1), sigma, cv2.CV_32F)
    profile = cv2.sepFilter2D(row, cv2.CV_32F, kernel, np.ones((1, 1), np.float32), borderType=cv2.BORDER_REFLECT_101)
    mask = profile.reshape(-1, 1) * profile.reshape(1, -1)
    return ((mask - mask.min()) / (mask.max() - mask.min())).astype(np.float32)


@lru_cache(maxsize=1)
def blend_mask() -> np.ndarray:
    """The 3000^2 patch-blending mask, resized to each patch."""
    mask = gaussian_mask(MASK_SIZE)
    mask.setflags(write=False)
    return mask


def _density(integral: np.ndarray, rect: list[int]) -> float:
    """Mean gradient inside rect = [x, y, w, h] from the integral image."""
    x, y, w, h = rect
    return (integral[y + h, x + w] - integral[y, x + w] - integral[y + h, x] + integral[y, x]) / (w * h)


def patches(img: np.ndarray, base: int, factor: float) -> list[list[int]]:
    """[x, y, w, h] windows, largest first: a grid of base-sized windows (stride 3/8 base) where the
    gradient density reaches the image's, each grown by int(32 / factor) pixels while it still does."""
    grad = gradient(img)
    grad[grad < grad[grad > 0].mean()] = 0
    image_density = grad.sum() / grad.size
    integral = cv2.integral(grad)
    height, width = integral.shape
    half = int(round(base / 2))
    stride = int(round(half * 0.75))
    step = int(32 / factor)
    found = []
    for x in range(half, img.shape[1] - half, stride):
        for y in range(half, img.shape[0] - half, stride):
            rect = [x - half, y - half, 2 * half, 2 * half]
            if _density(integral, rect) < image_density:
                continue
            while True:
                grown = [rect[0] - step // 2, rect[1] - step // 2, rect[2] + step, rect[3] + step]
                if (grown[0] < 0 or grown[1] < 0 or grown[1] + grown[3] >= height or grown[0] + grown[2] >= width
                        or _density(integral, grown) < image_density):
                    break
                rect = grown
            found.append(rect)
    return sorted(found, key=lambda r: r[2], reverse=True)  # stable: grid order among equal sizes


def boosted_depth(img: np.ndarray, estimate: Estimate, merge: Merge, max_res: int) -> np.ndarray:
    """HxW float32 relative depth of float RGB `img` in [0, 1]."""
    height, width = img.shape[:2]
    whole_size, edge_share = processing_resolution(img)
    whole = double_estimate(img, RECEPTIVE_FIELD, whole_size, estimate, merge)
    if max_res < whole_size:
        return cv2.resize(whole, (width, height), interpolation=cv2.INTER_CUBIC)

    factor = max(min(1.0, 4 * edge_share * whole_size / WHOLE_SIZE_THRESHOLD), 0.2)
    long_side = 2 * whole_size
    if height > width:
        rows, cols = long_side, round(long_side * width / height)
    else:
        rows, cols = round(long_side * height / width), long_side
    rows, cols = int(round(rows / factor)), int(round(cols / factor))
    target = cv2.resize(img, (cols, rows), interpolation=cv2.INTER_CUBIC)
    found = patches(target, PATCH_SIZE, factor)

    scale = height / target.shape[0]  # patches are cut from the target scaled back to the input's size
    scaled_rgb = cv2.resize(target, (round(cols * scale), round(rows * scale)), interpolation=cv2.INTER_CUBIC)
    base = cv2.resize(whole, (round(cols * scale), round(rows * scale)), interpolation=cv2.INTER_CUBIC)
    result = base.copy()
    mask = blend_mask()
    for rect in found:
        x, y, w, h = np.round(np.array(rect) * scale).astype(int)
        patch_rgb = scaled_rgb[y:y + h, x:x + w]
        patch_base = base[y:y + h, x:x + w]
        shape = patch_base.shape
        refined = cv2.resize(double_estimate(patch_rgb, RECEPTIVE_FIELD, PATCH_SIZE, estimate, merge),
                             (MERGE_SIZE, MERGE_SIZE), interpolation=cv2.INTER_CUBIC)
        patch_base = cv2.resize(patch_base, (MERGE_SIZE, MERGE_SIZE), interpolation=cv2.INTER_CUBIC)
        mapped = merged(patch_base, refined, merge).numpy()
        slope, offset = np.polyfit(mapped.reshape(-1), patch_base.reshape(-1), deg=1)
        fitted = cv2.resize(slope * mapped + offset, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
        if mask.shape != shape:
            mask = cv2.resize(blend_mask(), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
        result[y:y + h, x:x + w] = result[y:y + h, x:x + w] * (1 - mask) + fitted * mask
    return cv2.resize(result, (width, height), interpolation=cv2.INTER_CUBIC)
