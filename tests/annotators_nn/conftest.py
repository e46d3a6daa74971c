"""A real photo, small enough for CPU networks in tests."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """skimage's astronaut (a real photograph) at 256 x 320: small enough for CPU networks in tests."""
    image = cv2.resize(skimage.data.astronaut(), (320, 256), interpolation=cv2.INTER_AREA)
    image.setflags(write=False)
    return image
