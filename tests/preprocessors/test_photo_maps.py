"""blur_gaussian, t2ia_color_grid, tile_resample, recolor_*: formulas (§5.1) and slider directions."""

import cv2
import numpy as np
import pytest
from skimage.color import rgb2lab
from skimage.filters import gaussian

from annotator.blur import blur_gaussian
from annotator.color_grid import color_grid
from annotator.recolor import recolor_intensity, recolor_luminance
from annotator.tile import tile_resample
from lib_controlnet.preprocessors.map_resize import count_colours


def _detail(rgb):
    """High-frequency energy: variance of the Laplacian of the grey image."""
    return float(cv2.Laplacian(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def test_blur_gaussian_agrees_with_scikit_image(astronaut_rgb):
    out = blur_gaussian(astronaut_rgb, 512, 3.0)
    oracle = gaussian(astronaut_rgb, sigma=3.0, channel_axis=-1, mode="reflect", preserve_range=True)
    inner = (slice(20, -20), slice(20, -20))  # the two libraries treat borders differently
    assert np.abs(out[inner].astype(float) - oracle[inner]).max() <= 2


def test_blur_gaussian_larger_sigma_is_softer_and_resolution_sizes_it(chelsea_rgb):
    details = [_detail(blur_gaussian(chelsea_rgb, 300, s)) for s in (0.5, 3.0, 9.0, 30.0)]
    assert details == sorted(details, reverse=True) and details[0] > 10 * details[-1]
    assert blur_gaussian(chelsea_rgb, 512, 9.0).shape == (512, 770, 3)


def test_color_grid_is_a_mosaic_of_the_photo(chelsea_rgb):
    out = color_grid(chelsea_rgb, 512)
    assert out.shape == (512, 770, 3)
    small = cv2.resize(cv2.resize(chelsea_rgb, (770, 512), interpolation=cv2.INTER_AREA), (12, 8),
                       interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(out, cv2.resize(small, (770, 512), interpolation=cv2.INTER_NEAREST))
    assert 40 <= count_colours(out) <= 96  # one colour per cell of the 12 x 8 grid, some may coincide
    # The mosaic keeps the photo's colours where they are: each cell is close to its area's mean.
    photo = cv2.resize(chelsea_rgb, (770, 512), interpolation=cv2.INTER_AREA).astype(float)
    assert abs(out.astype(float).mean() - photo.mean()) < 6


def test_color_grid_resolution_sets_cell_count(astronaut_rgb):
    counts = [count_colours(color_grid(astronaut_rgb, r)) for r in (128, 512, 1024)]
    assert counts[0] < counts[1] < counts[2]


def test_tile_resample_downscales_by_rate_with_area_interpolation(chelsea_rgb):
    assert tile_resample(chelsea_rgb, 1.0) is chelsea_rgb
    assert tile_resample(chelsea_rgb, 1.09) is chelsea_rgb  # below 1.1: untouched
    out = tile_resample(chelsea_rgb, 2.5)
    assert out.shape == (120, 180, 3)
    assert np.array_equal(out, cv2.resize(chelsea_rgb, (180, 120), interpolation=cv2.INTER_AREA))
    sizes = [tile_resample(chelsea_rgb, r).shape[0] for r in (1.5, 3.0, 8.0)]
    assert sizes == [200, 100, 37]


def test_recolor_luminance_is_cie_lightness(astronaut_rgb):
    out = recolor_luminance(astronaut_rgb, 1.0)
    assert np.array_equal(out[:, :, 0], out[:, :, 1])
    lightness = rgb2lab(astronaut_rgb)[:, :, 0] * 255 / 100
    assert np.abs(out[:, :, 0].astype(float) - lightness).max() <= 2.5
    # Green looks brighter than blue of the same value: luminance weighs it more (unlike the reference's
    # swapped conversion, which would rank them the other way round).
    green = np.zeros((8, 8, 3), np.uint8)
    green[..., 1] = 200
    blue = np.zeros((8, 8, 3), np.uint8)
    blue[..., 2] = 200
    assert recolor_luminance(green, 1.0)[0, 0, 0] > recolor_luminance(blue, 1.0)[0, 0, 0] + 60


def test_recolor_intensity_is_hsv_value(astronaut_rgb):
    out = recolor_intensity(astronaut_rgb, 1.0)
    assert np.array_equal(out[:, :, 2], astronaut_rgb.max(axis=2))


@pytest.mark.parametrize("gamma", [0.37, 1.7])
def test_recolor_gamma_is_the_reference_per_pixel_formula(astronaut_rgb, gamma):
    lightness = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2LAB)[:, :, 0]
    for fn, channel in ((recolor_luminance, lightness), (recolor_intensity, astronaut_rgb.max(axis=2))):
        expected = ((channel.astype(np.float32) / 255.0) ** gamma * 255.0).clip(0, 255).astype(np.uint8)
        assert np.array_equal(fn(astronaut_rgb, gamma)[:, :, 1], expected)


@pytest.mark.parametrize("fn", [recolor_luminance, recolor_intensity])
def test_recolor_gamma_darkens_above_one_and_brightens_below(fn, astronaut_rgb):
    means = [float(fn(astronaut_rgb, g).mean()) for g in (0.5, 1.0, 2.0)]
    assert means[0] > means[1] + 20 and means[1] > means[2] + 20
    base = fn(astronaut_rgb, 1.0)[:, :, 0].astype(np.float32) / 255
    gamma2 = fn(astronaut_rgb, 2.0)[:, :, 0].astype(np.float32) / 255
    assert np.abs(gamma2 - base**2).max() <= 1.5 / 255
