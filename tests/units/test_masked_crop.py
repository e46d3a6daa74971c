"""img2img "Only masked": the mask, the crop region and the control-image crop, as A1111 1.10 does them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from unit_test_helpers import astronaut

from lib_controlnet.enums import ResizeMode
from lib_controlnet.errors import InputError
from lib_controlnet.units.masked_crop import (
    a1111_resize,
    crop_control_image,
    crop_region,
    prepare_mask,
    wants_masked_crop,
)

LANCZOS = Image.Resampling.LANCZOS


def block_mask(h, w, rows, cols):
    mask = np.zeros((h, w), np.uint8)
    mask[rows[0]:rows[1], cols[0]:cols[1]] = 255
    return mask


# --- crop region (hand-computed from A1111's get_crop_region_v2 + expand_crop_region) --------------------
@pytest.mark.parametrize(
    "rows, cols, padding, size, expected",
    [
        ((50, 80), (100, 140), 0, (512, 512), (100, 45, 140, 85)),  # 40x30 box grown to 40x40 around its centre
        ((50, 80), (100, 140), 32, (512, 512), (68, 13, 172, 117)),  # padded to 104x94, then 104x104
        ((0, 10), (0, 100), 0, (512, 512), (0, 0, 100, 100)),  # past the top edge: shifted down
        ((190, 200), (0, 100), 0, (512, 512), (0, 100, 100, 200)),  # past the bottom edge: shifted up
        ((50, 80), (100, 140), 0, (768, 512), (98, 50, 143, 80)),  # wider target: 45x30 (int of 45.0 - 40)
        ((0, 200), (0, 300), 50, (512, 512), (0, 0, 300, 200)),  # whole image: clamped both ways
    ],
)
def test_crop_region_examples(rows, cols, padding, size, expected):
    mask = block_mask(200, 300, rows, cols)
    assert crop_region(mask, padding, *size) == expected


def test_crop_region_of_a_blank_mask_is_none():
    assert crop_region(np.zeros((64, 64), np.uint8), 32, 512, 512) is None


def test_crop_region_of_a_real_mask_covers_it_at_the_target_ratio():
    photo = astronaut()
    mask = np.where(photo[:, :, 0] > 200, 255, 0).astype(np.uint8)  # bright areas of a real photo
    mask[:, :100] = 0
    ys, xs = np.nonzero(mask)
    x1, y1, x2, y2 = crop_region(mask, 16, 640, 384)
    assert x1 <= max(xs.min() - 16, 0) and y1 <= max(ys.min() - 16, 0)
    assert x2 >= min(xs.max() + 1 + 16, 512) and y2 >= min(ys.max() + 1 + 16, 512)
    assert 0 <= x1 < x2 <= 512 and 0 <= y1 < y2 <= 512
    assert abs((x2 - x1) / (y2 - y1) - 640 / 384) < 0.05 or (x2 - x1, y2 - y1) in ((512, y2 - y1), (x2 - x1, 512))


def test_crop_region_refuses_colour_masks():
    with pytest.raises(InputError) as info:
        crop_region(np.zeros((8, 8, 3), np.uint8), 0, 8, 8)
    assert info.value.field == "mask"


# --- preparing the mask like A1111 ---------------------------------------------------------------------
def test_alpha_layer_masks_are_thresholded_at_128():
    alpha = np.array([[0, 100, 128, 129, 200, 255]], np.uint8)
    rgba = np.dstack([np.zeros_like(alpha)] * 3 + [alpha])
    assert prepare_mask(rgba).tolist() == [[0, 0, 0, 255, 255, 255]]
    assert prepare_mask(rgba, round_alpha=False).tolist() == alpha.tolist()
    assert prepare_mask(rgba, invert=True).tolist() == [[255, 255, 255, 0, 0, 0]]


def test_opaque_and_grey_masks_use_their_grey_value():
    mask = block_mask(20, 30, (5, 10), (5, 20))
    opaque = np.dstack([mask, mask, mask, np.full_like(mask, 255)])
    assert np.array_equal(prepare_mask(opaque), mask)
    assert np.array_equal(prepare_mask(mask), mask)
    assert np.array_equal(prepare_mask(Image.fromarray(mask), invert=True), 255 - mask)


@pytest.mark.parametrize("sigma", [1, 4])
def test_blur_spreads_along_its_own_axis_by_at_most_the_kernel_radius(sigma):
    mask = block_mask(80, 80, (30, 50), (30, 50))
    radius = int(2.5 * sigma + 0.5)
    for axis_name, kwargs in (("x", {"blur_x": sigma}), ("y", {"blur_y": sigma})):
        blurred = prepare_mask(mask, **kwargs)
        rows, cols = np.nonzero(blurred.any(axis=1))[0], np.nonzero(blurred.any(axis=0))[0]
        spread, fixed = (cols, rows) if axis_name == "x" else (rows, cols)
        assert (fixed.min(), fixed.max()) == (30, 49)
        assert 30 - radius <= spread.min() < 30 and 49 < spread.max() <= 49 + radius
        edge = blurred[40, 30] if axis_name == "x" else blurred[30, 40]
        assert blurred[40, 40] >= 250 and 0 < edge < 255
    both = prepare_mask(mask, blur_x=sigma, blur_y=sigma)
    # a square blurred alike along x and y is symmetric up to the rounding between the two passes
    assert np.abs(both.astype(int) - both.T).max() <= 1


# --- A1111's resize_image for single channels -------------------------------------------------------------
@pytest.fixture(scope="module")
def channel():
    return Image.fromarray(astronaut()[:100, :200, 0])  # 200 wide, 100 high


def test_a1111_resize_just_resize(channel):
    assert np.array_equal(np.asarray(a1111_resize(channel, 0, 60, 90)), np.asarray(channel.resize((60, 90), LANCZOS)))


def test_a1111_resize_crop_and_resize_centre_crops(channel):
    out = np.asarray(a1111_resize(channel, 1, 100, 100))  # covering 100x100 needs no scaling: cut 50 each side
    assert np.array_equal(out, np.asarray(channel)[:, 50:150])


def test_a1111_resize_and_fill_stretches_the_edges_into_the_bands(channel):
    out = np.asarray(a1111_resize(channel, 2, 100, 100)).astype(int)
    inner = np.asarray(channel.resize((100, 50), LANCZOS)).astype(int)
    assert np.array_equal(out[25:75], inner)
    assert (out[:25] == out[0]).all() and (out[75:] == out[75]).all()  # one stretched edge row per band
    assert np.abs(out[0] - inner[0]).mean() < 2 and np.abs(out[75] - inner[-1]).mean() < 2
    tall = np.asarray(a1111_resize(channel.transpose(Image.Transpose.TRANSPOSE), 2, 100, 100)).astype(int)
    assert (tall[:, :25] == tall[:, :1]).all() and (tall[:, 75:] == tall[:, 75:76]).all()


# --- cropping the control image --------------------------------------------------------------------------
def test_crop_control_image_matches_cropping_the_picture_itself():
    photo = astronaut()
    mask = block_mask(512, 512, (200, 280), (150, 310))
    out = crop_control_image(photo, mask, padding=32, width=256, height=128, resize_mode="Just Resize")
    x1, y1, x2, y2 = crop_region(mask, 32, 256, 128)
    assert (x2 - x1) == 2 * (y2 - y1)  # the box took the 2:1 target ratio, so the fill bands are empty
    expected = np.asarray(Image.fromarray(photo).crop((x1, y1, x2, y2)).resize((256, 128), LANCZOS))
    assert out.shape == (128, 256, 3)
    assert np.array_equal(out, expected)


def test_crop_control_image_first_brings_the_image_to_the_mask_size():
    photo = astronaut()
    small = np.asarray(Image.fromarray(photo).resize((256, 256), LANCZOS))  # control image smaller than the mask
    mask = block_mask(512, 512, (100, 164), (300, 428))
    out = crop_control_image(small, mask, padding=0, width=128, height=64, resize_mode=ResizeMode.RESIZE)
    x1, y1, x2, y2 = crop_region(mask, 0, 128, 64)
    upscaled = Image.fromarray(small).resize((512, 512), LANCZOS)
    expected = np.asarray(upscaled.crop((x1, y1, x2, y2)).resize((128, 64), LANCZOS))
    assert np.array_equal(out, expected)


def test_crop_control_image_keeps_alpha_and_skips_blank_masks():
    photo = astronaut()
    rgba = np.dstack([photo, block_mask(512, 512, (0, 256), (0, 512))])
    mask = block_mask(512, 512, (240, 272), (0, 64))
    out = crop_control_image(rgba, mask, padding=0, width=64, height=64, resize_mode="Crop and Resize")
    assert out.shape == (64, 64, 4)
    assert crop_control_image(photo, np.zeros((512, 512), np.uint8), padding=8, width=64, height=64,
                              resize_mode=1) is photo
    with pytest.raises(InputError):
        crop_control_image(photo.astype(np.float32), mask, padding=0, width=64, height=64, resize_mode=0)


@pytest.mark.parametrize(
    "module, crop, only_masked, has_mask, keys, expected",
    [
        ("canny", True, True, True, (), True),
        ("canny", False, True, True, (), False),
        ("canny", False, True, True, ("Ultimate SD upscale upscaler",), True),  # upscale scripts tile by mask
        ("canny", False, True, True, ("Hires upscale",), False),
        ("reference_only", True, True, True, (), False),
        ("canny", True, False, True, (), False),
        ("canny", True, True, False, (), False),
    ],
)
def test_when_the_crop_applies(module, crop, only_masked, has_mask, keys, expected):
    assert wants_masked_crop(module, crop, only_masked, has_mask, keys) is expected
