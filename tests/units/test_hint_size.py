"""Hint sizes, pixel perfect, the three resize modes on real maps, and map -> hint tensor."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from unit_test_helpers import astronaut

from lib_controlnet.enums import ResizeMode
from lib_controlnet.errors import InputError
from lib_controlnet.units.hint_size import (
    align_to_latent,
    fit_detected_map,
    hint_size,
    hint_tensor,
    hires_hint_size,
    inpaint_hint,
    pixel_perfect_resolution,
    stack_hints,
)


@pytest.fixture(scope="module")
def photo():
    return astronaut()


# --- sizes ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("w, h, expected", [(512, 512, (512, 512)), (513, 769, (768, 512)), (1000, 600, (600, 1000)),
                                            (8, 15, (8, 8))])
def test_hint_size_is_aligned_down_to_8(w, h, expected):
    assert hint_size(w, h) == expected
    assert align_to_latent(15) == 8


def test_hint_size_smaller_than_a_latent_cell_is_an_error():
    with pytest.raises(InputError):
        hint_size(7, 512)


@pytest.mark.parametrize(
    "w, h, scale, rx, ry, expected",
    [
        (512, 768, 1.5, 0, 0, (1152, 768)),
        (520, 520, 1.3, 0, 0, (672, 672)),  # int(676) aligned down
        (512, 512, 2.0, 1024, 768, (768, 1024)),  # explicit size wins over the scale
        (512, 768, 2.0, 1000, 0, (1496, 1000)),  # height follows the aspect: 1000*768//512 = 1500 -> 1496
        (512, 768, 2.0, 0, 900, (896, 600)),  # width: 900*512//768 = 600
    ],
)
def test_hires_hint_size(w, h, scale, rx, ry, expected):
    assert hires_hint_size(w, h, scale, rx, ry) == expected


# --- pixel perfect --------------------------------------------------------------------------------------
def test_pixel_perfect_reference_examples():
    image = np.zeros((100, 100, 3), np.uint8)
    assert pixel_perfect_resolution(image, 50, 100, ResizeMode.OUTER_FIT) == 50
    assert pixel_perfect_resolution(image, 50, 100, ResizeMode.INNER_FIT) == 100
    assert pixel_perfect_resolution(image, 50, 100, "Just Resize") == 100
    assert pixel_perfect_resolution((100, 100), 50, 100, 2) == 50


@pytest.mark.parametrize("mode", [ResizeMode.INNER_FIT, ResizeMode.OUTER_FIT])
def test_pixel_perfect_makes_the_resize_a_no_op(photo, mode):
    """Preprocessed with its short side at the pixel-perfect resolution, the map needs scale 1 to fill (Crop and
    Resize) or fit (Resize and Fill) the target."""
    raw = photo[:300, :200]
    target_h, target_w = 768, 448
    res = pixel_perfect_resolution(raw, target_h, target_w, mode)
    k = res / min(raw.shape[:2])
    new_h, new_w = round(raw.shape[0] * k), round(raw.shape[1] * k)
    if mode is ResizeMode.INNER_FIT:
        assert new_h >= target_h and new_w >= target_w and (new_h == target_h or new_w == target_w)
    else:
        assert new_h <= target_h and new_w <= target_w and (new_h == target_h or new_w == target_w)


# --- resize modes on real maps --------------------------------------------------------------------------
def test_just_resize_stretches(photo):
    out = fit_detected_map(photo, "Just Resize", 300, 200)
    assert out.shape == (300, 200, 3)
    assert np.array_equal(out, cv2.resize(photo, (200, 300), interpolation=cv2.INTER_AREA))  # shrinking: area


def test_crop_and_resize_centre_crops(photo):
    out = fit_detected_map(photo, ResizeMode.INNER_FIT, 256, 512)  # same width: only rows cut
    assert np.array_equal(out, photo[128:384])
    out = fit_detected_map(photo, ResizeMode.INNER_FIT, 512, 300)
    assert np.array_equal(out, photo[:, 106:406])


def test_crop_and_resize_scales_to_cover(photo):
    out = fit_detected_map(photo[:256], "Crop and Resize", 512, 512)  # 256x512 -> k=2 -> 512x1024, crop cols
    enlarged = cv2.resize(photo[:256], (1024, 512), interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(out, enlarged[:, 256:768])


def test_resize_and_fill_pads_with_the_border_median(photo):
    out = fit_detected_map(photo, ResizeMode.OUTER_FIT, 512, 768)
    assert out.shape == (512, 768, 3)
    assert np.array_equal(out[:, 128:640], photo)
    borders = np.concatenate([photo[0], photo[-1], photo[:, 0], photo[:, -1]])
    fill = np.median(borders, axis=0).astype(np.uint8)
    assert (out[:, :128] == fill).all() and (out[:, 640:] == fill).all()


def test_resize_and_fill_keeps_an_inpaint_mask_and_marks_padding_to_paint(photo):
    alpha = np.zeros(photo.shape[:2], np.uint8)
    alpha[200:300, 200:300] = 255
    rgba = np.dstack([photo, alpha])
    out = fit_detected_map(rgba, "Resize and Fill", 512, 768, keep_alpha=True)
    assert out.shape == (512, 768, 4)
    assert (out[:, :128, 3] == 255).all() and (out[:, 640:, 3] == 255).all()
    assert np.array_equal(out[:, 128:640, 3], alpha)
    flat = fit_detected_map(rgba, "Resize and Fill", 512, 768)  # not inpaint: composited, 3 channels
    assert flat.shape == (512, 768, 3)


def test_grey_and_binary_line_maps(photo):
    grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    assert fit_detected_map(grey, "Just Resize", 64, 64).shape == (64, 64, 3)
    edges = cv2.Canny(grey, 100, 200)
    out = fit_detected_map(edges, "Crop and Resize", 1024, 768)
    assert out.shape == (1024, 768, 3)
    assert set(np.unique(out)) <= {0, 255}  # a line map stays a line map, not a blur


# --- tensors --------------------------------------------------------------------------------------------
def test_hint_tensor_is_nchw_in_unit_range(photo):
    tensor = hint_tensor(photo[:64, :32])
    assert tensor.shape == (1, 3, 64, 32) and tensor.dtype == torch.float32
    assert torch.equal(tensor[0, 1], torch.from_numpy(photo[:64, :32, 1]).float() / 255)
    assert hint_tensor(photo[:8, :8, 0]).shape == (1, 1, 8, 8)


def test_inpaint_hint_marks_masked_pixels_minus_one(photo):
    alpha = np.zeros((4, 4), np.uint8)
    alpha[0, :] = 255
    alpha[1, :] = 128  # 128/255 > 0.5: masked
    alpha[2, :] = 127  # below one half: kept
    rgba = np.dstack([photo[:4, :4], alpha])
    hint = hint_tensor(rgba)
    assert hint.shape == (1, 3, 4, 4)
    assert (hint[0, :, :2] == -1).all()
    assert torch.equal(hint[0, :, 2:], torch.from_numpy(photo[2:4, :4]).permute(2, 0, 1).float() / 255)
    with pytest.raises(InputError):
        inpaint_hint(torch.zeros(1, 3, 4, 4))


def test_hint_tensor_refuses_non_uint8():
    with pytest.raises(InputError):
        hint_tensor(np.zeros((4, 4, 3), np.float32))


def test_stack_hints(photo):
    a, b = hint_tensor(photo[:16, :16]), hint_tensor(photo[16:32, :16])
    assert stack_hints([a, b]).shape == (2, 3, 16, 16)
    with pytest.raises(InputError):
        stack_hints([a, hint_tensor(photo[:8, :16])])
    with pytest.raises(InputError):
        stack_hints([])
