"""Resizing a detected map to the generation size without spoiling it (the reference's "high quality"
resize and its three resize modes).

A map is not a photo: a one-pixel edge map scaled with cubic interpolation becomes a grey band, and a
segmentation map scaled with anything but nearest neighbour gains colours that are no class. So the
interpolation is chosen by what the map is:

* 2 < distinct colours < 200: a segmentation-like map, nearest neighbour;
* two colours, one near black and one near white: a binary map; it is resized, averaged to grey and
  re-binarised with Otsu, and if its lines are mostly one pixel wide they are also thinned back to one pixel;
* anything else: area when shrinking, cubic when enlarging.

An alpha channel (the inpaint mask) is resized alongside and re-binarised at 127.
"""

from __future__ import annotations

import cv2
import numpy as np

from annotator.thinning import directional_maxima, thin
from lib_controlnet.enums import ResizeMode

SEGMENTATION_MAX_COLOURS = 200
BINARY_DARK_MAX = 16
BINARY_LIGHT_MIN = 240


def count_colours(rgb: np.ndarray) -> int:
    """Number of distinct RGB triples in an HxWx3 uint8 map."""
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    return int(np.unique(packed).size)


def _is_one_pixel_lines(binary_rgb: np.ndarray) -> bool:
    """True when more than half the line pixels vanish under a 3x3 opening, i.e. lines are ~1 px thin."""
    box = np.ones((3, 3), dtype=np.uint8)
    opened = cv2.dilate(cv2.erode(binary_rgb, box), box)
    thin_pixels = int(np.count_nonzero(opened < binary_rgb))
    line_pixels = int(np.count_nonzero(binary_rgb > 127))
    return thin_pixels * 2 > line_pixels


def high_quality_resize(detected_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`detected_map` (HxWx3, or HxWx4 with a mask) resized to `size` = (width, height)."""
    width, height = size
    mask = None
    rgb = detected_map
    if rgb.ndim == 3 and rgb.shape[2] == 4:
        rgb, mask = rgb[:, :, :3], rgb[:, :, 3]
    if rgb.shape[:2] == (height, width):
        resized = rgb
    else:
        shrinking = width * height < rgb.shape[0] * rgb.shape[1]
        enlarging = width * height > rgb.shape[0] * rgb.shape[1]
        colours = count_colours(rgb)
        binary = colours == 2 and int(rgb.min()) < BINARY_DARK_MAX and int(rgb.max()) > BINARY_LIGHT_MIN
        one_pixel_lines = binary and _is_one_pixel_lines(rgb)
        if 2 < colours < SEGMENTATION_MAX_COLOURS:
            interpolation = cv2.INTER_NEAREST
        elif shrinking:
            interpolation = cv2.INTER_AREA
        else:
            interpolation = cv2.INTER_CUBIC  # cubic's overshoot gives the maxima step sharp ridges to find
        resized = cv2.resize(rgb, (width, height), interpolation=interpolation)
        if mask is not None:
            mask = cv2.resize(mask, (width, height), interpolation=interpolation)
        if binary:
            # The channel mean, truncated (integer division is exact here and much faster than a float mean).
            grey = ((resized[:, :, 0].astype(np.uint16) + resized[:, :, 1] + resized[:, :, 2]) // 3).astype(np.uint8)
            if one_pixel_lines:
                grey = directional_maxima(grey)
                _, grey = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
                grey = thin(grey, prune=enlarging)
            else:
                _, grey = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
            resized = np.repeat(grey[:, :, None], 3, axis=2)
    if mask is None:
        return resized
    mask = np.where(mask > 127, 255, 0).astype(np.uint8)
    return np.concatenate([resized, mask[:, :, None]], axis=2)


def _border_colour(detected_map: np.ndarray) -> np.ndarray:
    """Median of the four border rows/columns: the colour the map's background most likely has."""
    borders = np.concatenate([detected_map[0], detected_map[-1], detected_map[:, 0], detected_map[:, -1]])
    colour = np.median(borders, axis=0).astype(detected_map.dtype)
    if colour.shape[0] == 4:
        colour[3] = 255  # padding around an inpaint map is area to paint
    return colour


def resize_to_target(detected_map: np.ndarray, resize_mode: ResizeMode | str | int,
                     height: int, width: int) -> np.ndarray:
    """The map at exactly `height` x `width`, by the unit's resize mode:

    * Just Resize: stretched;
    * Crop and Resize: scaled to cover the target, centre-cropped;
    * Resize and Fill: scaled to fit inside, centred on a canvas of the border colour.
    """
    mode = ResizeMode.parse(resize_mode, field="resize_mode")
    if mode is ResizeMode.RESIZE:
        return high_quality_resize(detected_map, (width, height))
    old_h, old_w = detected_map.shape[:2]
    k_h, k_w = height / old_h, width / old_w
    if mode is ResizeMode.OUTER_FIT:
        k = min(k_h, k_w)
        canvas = np.tile(_border_colour(detected_map)[None, None], (height, width, 1))
        inner = high_quality_resize(detected_map, (int(np.round(old_w * k)), int(np.round(old_h * k))))
        new_h, new_w = inner.shape[:2]
        top, left = max(0, (height - new_h) // 2), max(0, (width - new_w) // 2)
        canvas[top:top + new_h, left:left + new_w] = inner[:height, :width]
        return canvas
    k = max(k_h, k_w)
    outer = high_quality_resize(detected_map, (int(np.round(old_w * k)), int(np.round(old_h * k))))
    new_h, new_w = outer.shape[:2]
    top, left = max(0, (new_h - height) // 2), max(0, (new_w - width) // 2)
    return np.ascontiguousarray(outer[top:top + height, left:left + width])
