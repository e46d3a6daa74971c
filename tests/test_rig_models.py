"""tools/a1111_rig_models.py: the parts that run without the WebUI's venv (the SDXL ControlNet's layout, the
tensor-by-tensor safetensors writer, the default-initialisation values). The SDXL checkpoint's key set comes from
sgm itself, so only the rig (tests/a1111) checks it, by A1111 loading it as SDXL."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lib_controlnet.models.detection import detect
from tests.published_shapes import SDXL_SMALL, diffusers_shapes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rig_models():
    spec = importlib.util.spec_from_file_location("a1111_rig_models", ROOT / "tools" / "a1111_rig_models.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_sdxl_small_controlnet_is_diffusers_layout(rig_models):
    ours = rig_models.diffusers_sdxl_small_controlnet_shapes()
    assert ours == diffusers_shapes(SDXL_SMALL)
    det = detect(ours)
    assert (det.format, det.family, det.variant, det.arch.num_outputs) == ("diffusers-controlnet", "sdxl", "small", 10)


def test_planned_file_equals_safetensors_own_writer(rig_models, tmp_path):
    shapes = {"a.weight": (4, 3, 3, 3), "a.bias": (4,), "norm.weight": (4,), "norm.bias": (4,),
              "tok_embedding.weight": (10, 4), "scale": ()}
    exact = {"ids": lambda: torch.arange(5, dtype=torch.int64)[None]}
    plan = rig_models.planned_like("x.safetensors", {**shapes, "ids": (1, 5)}, torch.float16, exact)
    entry = rig_models.Entry("x.safetensors", lambda: plan, "float16")
    rig_models.write_planned(tmp_path / "planned.safetensors", entry, plan)
    ours = load_file(tmp_path / "planned.safetensors")
    drawn = {k: p.draw().to(p.dtype) for k, p in plan.items()}
    assert set(ours) == set(drawn)
    for key, value in drawn.items():
        assert ours[key].dtype == value.dtype and torch.equal(ours[key], value), key
    with safe_open(tmp_path / "planned.safetensors", "pt") as f:
        assert f.metadata() == rig_models.METADATA
    save_file(drawn, tmp_path / "theirs.safetensors", metadata=rig_models.METADATA)
    assert (tmp_path / "planned.safetensors").stat().st_size == (tmp_path / "theirs.safetensors").stat().st_size


def test_planned_values_follow_default_initialisation(rig_models):
    shapes = {"conv.weight": (64, 32, 3, 3), "conv.bias": (64,), "ln.weight": (32,), "ln.bias": (32,),
              "token_embedding.weight": (1000, 32)}
    plan = rig_models.planned_like("y.safetensors", shapes, torch.float16)
    bound = 1 / math.sqrt(32 * 9)
    conv, bias = plan["conv.weight"].draw(), plan["conv.bias"].draw()
    assert conv.abs().max() <= bound and conv.abs().max() > 0.9 * bound
    assert bias.abs().max() <= bound and bias.any()
    assert torch.equal(plan["ln.weight"].draw(), torch.ones(32))
    assert plan["ln.bias"].draw().any()
    assert 0.015 < plan["token_embedding.weight"].draw().std() < 0.025
    assert torch.equal(plan["conv.weight"].draw(), conv)  # the same values every time
    other = rig_models.planned_like("z.safetensors", shapes, torch.float16)
    assert not torch.equal(other["conv.weight"].draw(), conv)  # seeded by file and key
