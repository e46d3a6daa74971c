"""Real photographs that ship inside installed packages, as uint8 RGB arrays."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data


def load_grace_hopper() -> np.ndarray:
    import matplotlib.cbook
    from PIL import Image

    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).copy()


@pytest.fixture(scope="session")
def astronaut_rgb() -> np.ndarray:
    """512x512 portrait: a face, a body, hard edges (suit, flag) and soft gradients."""
    image = skimage.data.astronaut()
    image.setflags(write=False)
    return image


@pytest.fixture(scope="session")
def chelsea_rgb() -> np.ndarray:
    """300x451 photo of a cat: no human face or body."""
    image = skimage.data.chelsea()
    image.setflags(write=False)
    return image


@pytest.fixture(scope="session")
def grace_hopper_rgb() -> np.ndarray:
    """600x512 portrait with a face and shoulders."""
    image = load_grace_hopper()
    image.setflags(write=False)
    return image


@pytest.fixture(scope="session")
def two_portraits_rgb(astronaut_rgb, grace_hopper_rgb) -> np.ndarray:
    """Head-and-shoulders crops of the astronaut and Grace Hopper side by side (300 x 600): two faces in
    one photo, each large enough for mediapipe's short-range face detector."""
    import cv2

    hopper = cv2.resize(grace_hopper_rgb[50:450, 56:456], (300, 300), interpolation=cv2.INTER_AREA)
    image = np.concatenate([astronaut_rgb[0:300, 100:400], hopper], axis=1)
    image.setflags(write=False)
    return image
