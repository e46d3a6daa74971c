"""shuffle: the reference's flow-field remap, seeded from the generation seed."""

import cv2
import numpy as np

from annotator.shuffle import generation_seed, shuffle


def _reference_recipe(img, seed):
    """The reference's steps, written from its description: np.random.seed, then two noise disks (x, y) of
    uniform noise on a (H//256 + 2, W//256 + 2) grid, cubic-upscaled by 256 with a 256 margin, min-max
    normalised, scaled to the image size, and a bilinear remap."""
    np.random.seed(seed)
    h, w = img.shape[:2]

    def disk():
        noise = np.random.uniform(0, 1, size=(h // 256 + 2, w // 256 + 2, 1))
        noise = cv2.resize(noise, (w + 512, h + 512), interpolation=cv2.INTER_CUBIC)[256:256 + h, 256:256 + w]
        noise = noise - noise.min()
        return noise / noise.max()

    x = disk() * (w - 1)
    y = disk() * (h - 1)
    return cv2.remap(img, x.astype(np.float32), y.astype(np.float32), cv2.INTER_LINEAR)


def test_seeded_shuffle_reproduces_the_reference_draws(chelsea_rgb):
    out = shuffle(chelsea_rgb, 512, seed=1234)
    resized = cv2.resize(chelsea_rgb, (770, 512), interpolation=cv2.INTER_CUBIC)
    assert out.shape == (512, 770, 3)
    assert np.array_equal(out, _reference_recipe(resized, 1234))


def test_same_seed_same_map_other_seed_other_map_no_seed_fresh(astronaut_rgb):
    a, b = shuffle(astronaut_rgb, 512, 7), shuffle(astronaut_rgb, 512, 7)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, shuffle(astronaut_rgb, 512, 8))
    assert not np.array_equal(shuffle(astronaut_rgb, 512, None), shuffle(astronaut_rgb, 512, None))


def test_shuffle_keeps_colours_but_not_layout(astronaut_rgb):
    out = shuffle(astronaut_rgb, 512, 99).astype(np.float64)
    src = astronaut_rgb.astype(np.float64)
    # Every output pixel is sampled from the photo, so the colours stay within its range...
    assert out.min() >= src.min() and out.max() <= src.max()
    # ...but pixel-for-pixel the layout is gone.
    corr = np.corrcoef(out[:, :, 0].ravel(), src[:, :, 0].ravel())[0, 1]
    assert abs(corr) < 0.5
    # The flow is smooth, so the result is still locally coherent (not noise).
    assert np.abs(np.diff(out[:, :, 0], axis=1)).mean() < 10


def test_generation_seed_follows_the_reference_rule():
    assert generation_seed(1000, 5, first_seed=42) == 1005
    assert generation_seed(-1, 5, first_seed=42) == 47  # random seed: the first actual seed
    assert generation_seed(-1, -1, first_seed=42) == 84
    assert generation_seed(-7, 3, first_seed=42) == 3  # other negatives count as 0
    assert generation_seed(2**32 - 1, 2, first_seed=0) == 1  # wraps to 32 bits
