"""seg_passthrough: a segmentation map the user already has (flat colour regions), cleaned and passed on.

Segmentation ControlNets read each region's colour as a class (the ADE20K/COCO palettes), so a map must
have flat regions and sharp borders. A lossless map (few distinct colours) passes through untouched. A JPEG
of one has thousands of colours: shifted ones inside regions and blends along borders. Its classes are the
common colours of the flat pixels (whose neighbours have almost the same colour, so never border blends);
every pixel is then snapped to the nearest class colour.
"""

from __future__ import annotations

import numpy as np

from lib_controlnet.errors import InputError

from .util import hwc3

MAX_CLASSES = 256
# A pixel is "flat" when no 4-neighbour differs from it by more than this (sum over R, G, B).
FLAT_VARIATION = 6
# A class colour must cover this share of the image (and 16 pixels) among the flat pixels.
MIN_SHARE = 0.0002
MIN_PIXELS = 16
# Flat colours closer than this (RGB distance) to a more common one are that class shifted by compression.
# ADE20K has classes ~10 apart, so this stays below that.
MERGE_DISTANCE = 8.0
# What a map must look like: mostly flat, and many pixels exactly on a class colour. Photos fail both
# (measured: flat <= 0.2 except skies, on-class <= 0.11); JPEG maps pass (flat >= 0.56, on-class >= 0.35).
MIN_FLAT_SHARE = 0.4
MIN_ON_CLASS_SHARE = 0.25


def _pack(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _unpack(packed: np.ndarray) -> np.ndarray:
    return np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=-1).astype(np.int32)


def _flat_pixels(img: np.ndarray) -> np.ndarray:
    x = img.astype(np.int16)
    variation = np.zeros(img.shape[:2], dtype=np.int16)
    right = np.abs(x[:, 1:] - x[:, :-1]).sum(axis=2)
    down = np.abs(x[1:] - x[:-1]).sum(axis=2)
    for part, diff in ((variation[:, :-1], right), (variation[:, 1:], right),
                       (variation[:-1], down), (variation[1:], down)):
        np.maximum(part, diff, out=part)
    return variation <= FLAT_VARIATION


def _classes(flat_colours: np.ndarray, total: int) -> np.ndarray:
    colours, counts = np.unique(flat_colours, return_counts=True)
    min_count = max(MIN_PIXELS, MIN_SHARE * total)
    chosen: list[np.ndarray] = []
    for index in np.argsort(-counts, kind="stable"):
        if counts[index] < min_count or len(chosen) >= MAX_CLASSES:
            break
        rgb = _unpack(colours[index])
        if chosen and np.min(np.linalg.norm(np.stack(chosen) - rgb, axis=1)) < MERGE_DISTANCE:
            continue
        chosen.append(rgb)
    return np.stack(chosen) if chosen else np.zeros((0, 3), dtype=np.int32)


def _nearest(rgb: np.ndarray, palette: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Index of the nearest palette colour for each row of `rgb`, in chunks to bound memory."""
    pal = palette.astype(np.float32)
    pal_sq = (pal * pal).sum(axis=1)
    out = np.empty(len(rgb), dtype=np.int64)
    for start in range(0, len(rgb), chunk):
        part = rgb[start:start + chunk].astype(np.float32)
        # |a - b|^2 without the |a|^2 term, which does not change the argmin.
        out[start:start + chunk] = np.argmin(pal_sq[None, :] - 2.0 * part @ pal.T, axis=1)
    return out


def flat_segmentation(image: np.ndarray) -> np.ndarray:
    """The map with every pixel on one of its class colours. Raises InputError for a photo, since a
    segmentation model fed a photo's colours as classes produces nonsense."""
    img = hwc3(image)
    packed = _pack(img).ravel()
    colours, inverse, counts = np.unique(packed, return_inverse=True, return_counts=True)
    if len(colours) <= MAX_CLASSES:
        return img  # lossless already: every colour is a class
    flat = _flat_pixels(img).ravel()
    palette = _classes(packed[flat], packed.size)
    on_class = np.isin(colours, _pack(palette.astype(np.uint32)))
    on_class_share = counts[on_class].sum() / packed.size
    if flat.mean() < MIN_FLAT_SHARE or on_class_share < MIN_ON_CLASS_SHARE:
        raise InputError(
            f"seg_passthrough expects a flat-colour segmentation map, but {flat.mean():.0%} of the pixels are "
            f"in flat regions and {on_class_share:.0%} on a region colour; use a segmentation preprocessor "
            "for photos",
            field="image",
        )
    snapped = _unpack(colours)
    off = np.flatnonzero(~on_class)
    snapped[off] = palette[_nearest(snapped[off], palette)]
    return snapped.astype(np.uint8)[inverse].reshape(img.shape)
