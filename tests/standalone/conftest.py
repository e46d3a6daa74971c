"""Shared fixtures: the demo models written once per session into a temporary models folder."""

from __future__ import annotations

import pytest
import torch

from lib_controlnet import load_control_model
from standalone import Pipeline, ensure_demo_models, load_sd_model


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def demo(models_dir):
    return ensure_demo_models(models_dir)


@pytest.fixture(scope="session")
def sd_model(demo, models_dir):
    return load_sd_model(demo.checkpoint, models_dir=models_dir)


@pytest.fixture(scope="session")
def pipeline(sd_model):
    return Pipeline(sd_model)


@pytest.fixture(scope="session")
def controlnet(demo):
    return load_control_model(demo.controlnet)


@pytest.fixture
def hint():
    """A fixed random control map at the 64x64 test size."""
    return torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(7))


# --- SDXL: the random-weight SDXL demo (sgm layout, reduced widths) ------------------------------------------
@pytest.fixture(scope="session")
def sdxl_demo(models_dir):
    return ensure_demo_models(models_dir, "sdxl")


@pytest.fixture(scope="session")
def sdxl_model(sdxl_demo, models_dir):
    return load_sd_model(sdxl_demo.checkpoint, models_dir=models_dir)


@pytest.fixture(scope="session")
def sdxl_pipeline(sdxl_model):
    return Pipeline(sdxl_model)


@pytest.fixture(scope="session")
def sdxl_controlnet(sdxl_demo):
    return load_control_model(sdxl_demo.controlnet)
