"""Fixtures for the panel tests: a model folder with SD1 and SDXL ControlNets, the registry, a real photo."""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no network calls

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import skimage.data  # noqa: E402
from ui_model_files import write_model_folder  # noqa: E402

from lib_controlnet.models.registry import ModelRegistry  # noqa: E402
from lib_controlnet.preprocessors import default_registry  # noqa: E402


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("controlnet_models")
    families = write_model_folder(folder)
    return folder, families


@pytest.fixture
def models(model_folder) -> ModelRegistry:
    return ModelRegistry([model_folder[0]])


@pytest.fixture(scope="session")
def registry():
    return default_registry()


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(skimage.data.astronaut())
