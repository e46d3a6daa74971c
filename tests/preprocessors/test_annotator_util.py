import cv2
import numpy as np
import pytest

from annotator.util import apply_padded, hwc3, resize_short_side, short_side_size
from lib_controlnet.errors import InputError


def test_hwc3_replicates_grey_and_keeps_rgb(astronaut_rgb):
    grey = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2GRAY)
    out = hwc3(grey)
    assert out.shape == (512, 512, 3)
    assert np.array_equal(out[:, :, 0], grey) and np.array_equal(out[:, :, 2], grey)
    assert np.array_equal(hwc3(grey[:, :, None]), out)
    assert hwc3(astronaut_rgb) is astronaut_rgb


def test_hwc3_composites_rgba_over_white(astronaut_rgb):
    alpha = np.zeros((512, 512, 1), np.uint8)
    alpha[:, 256:] = 255
    alpha[:256, :128] = 128
    out = hwc3(np.concatenate([astronaut_rgb, alpha], axis=2))
    assert np.array_equal(out[:, 256:], astronaut_rgb[:, 256:])  # opaque: the photo
    assert (out[256:, :256] == 255).all()  # transparent: white
    expected = (astronaut_rgb[:256, :128].astype(np.float32) * (128 / 255) + 255 * (1 - 128 / 255)).astype(np.uint8)
    assert np.abs(out[:256, :128].astype(int) - expected).max() <= 1


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 2), np.uint8),
                                 np.zeros((0, 4, 3), np.uint8)])
def test_hwc3_rejects_non_images(bad):
    with pytest.raises(InputError) as info:
        hwc3(bad)
    assert info.value.field == "image"


def test_resize_short_side_matches_reference_rounding_and_interpolation(chelsea_rgb):
    assert short_side_size(300, 451, 512) == (512, int(np.round(451 * 512 / 300)))
    up = resize_short_side(chelsea_rgb, 512)
    assert up.shape == (512, 770, 3)
    assert np.array_equal(up, cv2.resize(chelsea_rgb, (770, 512), interpolation=cv2.INTER_CUBIC))
    down = resize_short_side(chelsea_rgb, 200)
    assert down.shape == (200, 301, 3)
    assert np.array_equal(down, cv2.resize(chelsea_rgb, (301, 200), interpolation=cv2.INTER_AREA))
    assert resize_short_side(chelsea_rgb, 300) is chelsea_rgb


def test_apply_padded_pads_edges_to_64_and_crops_back(chelsea_rgb):
    seen = []

    def spy(x):
        seen.append(x)
        return x[:, :, 0] // 2

    out = apply_padded(chelsea_rgb, spy)
    assert seen[0].shape == (320, 512, 3)
    assert np.array_equal(seen[0][300:, :451], np.repeat(chelsea_rgb[-1:], 20, axis=0))  # edge replicated
    assert out.shape == (300, 451) and np.array_equal(out, chelsea_rgb[:, :, 0] // 2)
