"""The "high quality" map resize (§6.3): thin lines stay thin and unbroken, segmentation colours stay exact,
photos resize normally; and the three resize modes."""

import cv2
import numpy as np
import pytest

from annotator.canny import canny
from annotator.thinning import directional_maxima, prune_ends, thin
from lib_controlnet.enums import ResizeMode
from lib_controlnet.preprocessors.map_resize import count_colours, high_quality_resize, resize_to_target


def _components(binary):
    return cv2.connectedComponents((binary > 0).astype(np.uint8), connectivity=8)[0] - 1


def test_thin_reduces_a_thick_stroke_to_one_connected_pixel_line():
    band = np.zeros((80, 200), np.uint8)
    cv2.line(band, (20, 40), (180, 40), 255, 9)
    cv2.line(band, (100, 40), (100, 75), 255, 7)
    skeleton = thin(band, prune=False)
    assert _components(skeleton) == 1
    assert skeleton[:, 60].astype(bool).sum() == 1  # one pixel across the horizontal stroke
    assert skeleton[60].astype(bool).sum() == 1  # and across the vertical one
    assert (skeleton > 0).sum() < (band > 0).sum() / 5
    # Thinning is idempotent: a skeleton has nothing left to remove.
    assert np.array_equal(thin(skeleton, prune=False), skeleton)


def test_prune_removes_line_ends_and_dots_but_not_line_middles():
    img = np.zeros((20, 20), np.uint8)
    img[10, 3:15] = 255  # a line: its two end pixels go
    img[2, 2] = 255  # an isolated dot goes
    out = prune_ends(img)
    assert out[10, 3] == 0 and out[10, 14] == 0 and out[2, 2] == 0
    assert (out[10, 4:14] == 255).all()


def test_directional_maxima_keeps_ridges_and_drops_slopes():
    y, x = np.mgrid[0:9, 0:9]
    ridge = (200 - 20 * np.abs(x - 4) + y).astype(np.uint8)  # a ridge along column 4, rising downwards
    out = directional_maxima(ridge)
    inner = slice(1, 8)  # rows that have neighbours above and below
    assert np.array_equal(out[inner, 4], ridge[inner, 4])
    assert not out[inner, :4].any() and not out[inner, 5:].any()


@pytest.fixture(scope="module")
def canny_map(astronaut_rgb):
    return canny(astronaut_rgb, 512, 100, 200)


def test_upscaled_canny_map_stays_binary_thin_and_connected(canny_map):
    big = high_quality_resize(canny_map, (1024, 1024))
    assert big.shape == (1024, 1024, 3) and set(np.unique(big)) == {0, 255}
    edges = big[:, :, 0] > 0
    # Lines get longer (about 2x the pixels), not fatter (4x): at most a sliver of 2x2 solid blocks.
    ratio = edges.sum() / (canny_map[:, :, 0] > 0).sum()
    assert 1.4 < ratio < 2.6
    solid = edges[:-1, :-1] & edges[1:, :-1] & edges[:-1, 1:] & edges[1:, 1:]
    assert solid.sum() < 0.01 * edges.sum()
    # Plain cubic + threshold would give bands instead.
    naive = cv2.resize(canny_map, (1024, 1024), interpolation=cv2.INTER_CUBIC)[:, :, 0] > 127
    assert naive.sum() / (canny_map[:, :, 0] > 0).sum() > ratio + 0.5


def test_downscaled_canny_map_keeps_lines_nearest_neighbour_loses(canny_map):
    small = high_quality_resize(canny_map, (256, 256))[:, :, 0] > 0
    nearest = cv2.resize(canny_map, (256, 256), interpolation=cv2.INTER_NEAREST)[:, :, 0] > 0
    # Where the original has an edge in a 2x2 block, the result should have one within a pixel.
    has_edge = cv2.resize((canny_map[:, :, 0] > 0).astype(np.uint8), (256, 256), interpolation=cv2.INTER_AREA) > 0
    near = cv2.dilate(small.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    near_nearest = cv2.dilate(nearest.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert (near & has_edge).sum() / has_edge.sum() > 0.95
    assert (near_nearest & has_edge).sum() / has_edge.sum() < (near & has_edge).sum() / has_edge.sum() - 0.05


def test_segmentation_like_maps_use_nearest_and_keep_their_colours(astronaut_rgb):
    palette = np.array([[120, 120, 120], [180, 120, 120], [6, 230, 230], [4, 200, 3]], np.uint8)
    seg = palette[(cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2GRAY) // 64).clip(0, 3)]
    assert count_colours(seg) == 4
    for size in ((300, 200), (1000, 700)):
        out = high_quality_resize(seg, size)
        assert out.shape == (size[1], size[0], 3)
        assert np.array_equal(out, cv2.resize(seg, size, interpolation=cv2.INTER_NEAREST))


def test_photos_use_area_down_and_cubic_up(astronaut_rgb):
    assert np.array_equal(high_quality_resize(astronaut_rgb, (200, 300)),
                          cv2.resize(astronaut_rgb, (200, 300), interpolation=cv2.INTER_AREA))
    assert np.array_equal(high_quality_resize(astronaut_rgb, (700, 600)),
                          cv2.resize(astronaut_rgb, (700, 600), interpolation=cv2.INTER_CUBIC))
    assert high_quality_resize(astronaut_rgb, (512, 512)) is astronaut_rgb


def test_thick_binary_maps_are_rebinarised_without_thinning(astronaut_rgb):
    blobs = np.where(cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2GRAY) > 128, 255, 0).astype(np.uint8)
    blobs = np.repeat(blobs[:, :, None], 3, axis=2)
    out = high_quality_resize(blobs, (1024, 1024))
    assert set(np.unique(out)) == {0, 255}
    assert abs((out > 0).mean() - (blobs > 0).mean()) < 0.01  # area kept, nothing thinned away


def test_inpaint_alpha_is_resized_and_rebinarised(astronaut_rgb):
    mask = np.zeros((512, 512, 1), np.uint8)
    cv2.circle(mask, (256, 256), 120, 255, -1)
    out = high_quality_resize(np.concatenate([astronaut_rgb, mask], axis=2), (300, 300))
    assert out.shape == (300, 300, 4) and set(np.unique(out[:, :, 3])) == {0, 255}
    assert abs((out[:, :, 3] > 0).mean() - (mask > 0).mean()) < 0.01


def test_resize_modes_give_the_target_size_with_the_reference_geometry(chelsea_rgb):
    # chelsea is 300 x 451 (h x w); target 512 x 512.
    just = resize_to_target(chelsea_rgb, ResizeMode.RESIZE, 512, 512)
    assert np.array_equal(just, cv2.resize(chelsea_rgb, (512, 512), interpolation=cv2.INTER_CUBIC))
    crop = resize_to_target(chelsea_rgb, "Crop and Resize", 512, 512)
    scaled = cv2.resize(chelsea_rgb, (770, 512), interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(crop, scaled[:, 129:641])
    fill = resize_to_target(chelsea_rgb, 2, 512, 512)  # the legacy int index of "Resize and Fill"
    inner = cv2.resize(chelsea_rgb, (512, 341), interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(fill[85:426], inner)
    border = np.median(np.concatenate([chelsea_rgb[0], chelsea_rgb[-1], chelsea_rgb[:, 0], chelsea_rgb[:, -1]]),
                       axis=0).astype(np.uint8)
    assert (fill[:85] == border).all() and (fill[426:] == border).all()


def test_resize_and_fill_pads_an_inpaint_map_as_area_to_paint(astronaut_rgb):
    rgba = np.concatenate([astronaut_rgb, np.zeros((512, 512, 1), np.uint8)], axis=2)
    out = resize_to_target(rgba, ResizeMode.OUTER_FIT, 512, 768)
    assert out.shape == (512, 768, 4)
    assert (out[:, :128, 3] == 255).all() and (out[:, 128:640, 3] == 0).all()
