"""Fixtures for the API tests: a client on a test app, and real photos as base64."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import skimage.data
from api_test_helpers import make_client, to_b64
from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def controlnet_client() -> TestClient:
    return make_client()


@pytest.fixture(scope="session")
def astronaut_rgb() -> np.ndarray:
    return skimage.data.astronaut()


@pytest.fixture(scope="session")
def astronaut_png_b64(astronaut_rgb) -> str:
    return to_b64(astronaut_rgb)


@pytest.fixture(scope="session")
def grace_hopper_path() -> str:
    import matplotlib.cbook

    return matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)


@pytest.fixture(scope="session")
def grace_hopper_jpeg_b64(grace_hopper_path) -> str:
    with open(grace_hopper_path, "rb") as handle:
        return base64.b64encode(handle.read()).decode("ascii")
