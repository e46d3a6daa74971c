"""canny, scribble_xdog, threshold, lineart_standard, invert: against the reference's formulas (§5.1) on real
photos, the kind of map they make, and the direction each slider moves it."""

import cv2
import numpy as np
import pytest

from annotator.canny import canny
from annotator.invert import invert
from annotator.lineart_standard import lineart_standard
from annotator.threshold import threshold
from annotator.xdog import scribble_xdog


def _gradient(rgb):
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))


def _pad_oracle(img, fn):
    """The reference's resize_image_with_pad → fn → remove_pad, written out independently."""
    h, w = img.shape[:2]
    padded = np.pad(img, [(0, -h % 64), (0, -w % 64), (0, 0)], mode="edge")
    return fn(padded)[:h, :w]


def test_canny_is_cv2_canny_at_processing_resolution(astronaut_rgb, chelsea_rgb):
    out = canny(astronaut_rgb, 512, 100, 200)
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8
    assert np.array_equal(out[:, :, 0], cv2.Canny(astronaut_rgb, 100, 200))
    assert np.array_equal(out[:, :, 0], out[:, :, 2])
    # A size that is not a multiple of 64 goes through the padded path, like the reference.
    cat = canny(chelsea_rgb, 300, 50.9, 120.2)  # thresholds truncate to int
    assert cat.shape == (300, 451, 3)
    assert np.array_equal(cat[:, :, 0], _pad_oracle(chelsea_rgb, lambda x: cv2.Canny(x, 50, 120)))


def test_canny_edges_lie_on_strong_gradients(astronaut_rgb):
    edges = canny(astronaut_rgb, 512, 100, 200)[:, :, 0] > 0
    gradient = _gradient(astronaut_rgb)
    assert 0.02 < edges.mean() < 0.25
    assert gradient[edges].mean() > 4 * gradient[~edges].mean()


def test_canny_higher_thresholds_give_fewer_edges(astronaut_rgb):
    counts = [int((canny(astronaut_rgb, 512, low, high) > 0).sum()) for low, high in
              [(20, 60), (100, 200), (200, 255)]]
    assert counts[0] > counts[1] > counts[2] > 0


def test_canny_resolution_sets_the_map_size(astronaut_rgb):
    assert canny(astronaut_rgb, 256, 100, 200).shape == (256, 256, 3)
    assert canny(astronaut_rgb, 768, 100, 200).shape == (768, 768, 3)


def _xdog_oracle(img, thr):
    x = img.astype(np.float64)
    dog = cv2.GaussianBlur(x, (0, 0), 5.0) - cv2.GaussianBlur(x, (0, 0), 0.5)
    strength = np.ceil(np.clip(np.min(dog, axis=2), 0, 255))
    return np.where(2 * strength > thr, 255, 0).astype(np.uint8)


def test_scribble_xdog_matches_the_dog_formula(astronaut_rgb, chelsea_rgb):
    for photo, res in ((astronaut_rgb, 512), (chelsea_rgb, 300)):
        out = scribble_xdog(photo, res, 32)
        expected = _pad_oracle(photo, lambda x: _xdog_oracle(x, 32))
        assert out.shape == photo.shape
        assert set(np.unique(out)) <= {0, 255}
        # float32 in the implementation vs float64 here: allow a handful of pixels on the threshold.
        assert (out[:, :, 0] != expected).mean() < 0.002


def test_scribble_xdog_marks_dark_lines_and_lower_threshold_keeps_more(astronaut_rgb):
    grey = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    darker_than_around = cv2.GaussianBlur(grey, (0, 0), 5.0) - grey
    white = scribble_xdog(astronaut_rgb, 512, 32)[:, :, 0] > 0
    assert darker_than_around[white].mean() > 10 > darker_than_around[~white].mean()
    counts = [int((scribble_xdog(astronaut_rgb, 512, t) > 0).sum()) for t in (4, 32, 64)]
    assert counts[0] > counts[1] > counts[2] > 0


def test_threshold_is_min_channel_above_level(astronaut_rgb):
    out = threshold(astronaut_rgb, 512, 127)
    expected = np.where(astronaut_rgb.min(axis=2) > 127, 255, 0)
    assert np.array_equal(out[:, :, 0], expected) and np.array_equal(out[:, :, 1], expected)
    counts = [int((threshold(astronaut_rgb, 512, t) > 0).sum()) for t in (30, 127, 220)]
    assert counts[0] > counts[1] > counts[2] > 0


def _lineart_oracle(img):
    x = img.astype(np.float32)
    darkness = np.min(cv2.GaussianBlur(x, (0, 0), 6.0) - x, axis=2).clip(0, 255)
    norm = max(16.0, float(np.median(darkness[darkness > 8])))
    return (darkness / norm * 127).clip(0, 255).astype(np.uint8)


def test_lineart_standard_matches_formula_and_finds_dark_lines(astronaut_rgb, chelsea_rgb):
    out = lineart_standard(astronaut_rgb, 512)
    assert np.array_equal(out[:, :, 0], _lineart_oracle(astronaut_rgb))
    cat = lineart_standard(chelsea_rgb, 300)
    assert np.array_equal(cat[:, :, 0], _pad_oracle(chelsea_rgb, _lineart_oracle))
    lines = out[:, :, 0] > 127
    grey = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    assert (cv2.GaussianBlur(grey, (0, 0), 6.0) - grey)[lines].mean() > 15
    assert 0.005 < lines.mean() < 0.2


def test_lineart_standard_keeps_a_flat_image_black():
    flat = np.full((128, 128, 3), 200, np.uint8)
    assert not lineart_standard(flat, 128).any()


def test_invert_flips_every_channel(astronaut_rgb):
    out = invert(astronaut_rgb)
    assert np.array_equal(out.astype(int) + astronaut_rgb, np.full((512, 512, 3), 255))
    assert invert(astronaut_rgb[:, :, 0]).shape == (512, 512, 3)


@pytest.mark.parametrize("fn", [lambda x: canny(x, 512, 100, 200), lambda x: scribble_xdog(x, 512, 32),
                                lambda x: lineart_standard(x, 512), lambda x: threshold(x, 512, 127)])
def test_line_maps_accept_grey_and_rgba(fn, astronaut_rgb):
    grey = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2GRAY)
    rgba = np.concatenate([astronaut_rgb, np.full((512, 512, 1), 255, np.uint8)], axis=2)
    assert fn(grey).shape == (512, 512, 3)
    assert np.array_equal(fn(rgba), fn(astronaut_rgb))
