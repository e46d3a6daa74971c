"""Helpers for the standalone pipeline tests."""

from __future__ import annotations

import numpy as np
import torch

from standalone import GenerationRequest


def small(**overrides) -> GenerationRequest:
    """64x64, 4 steps: the size every pipeline test runs at."""
    base = dict(prompt="a photo of a cat", negative_prompt="blurry", width=64, height=64, steps=4, seed=1234,
                cfg_scale=7.0, sampler_name="Euler")
    base.update(overrides)
    return GenerationRequest(**base)


def pixels(result) -> list[torch.Tensor]:
    return [torch.from_numpy(np.asarray(im).astype(np.float32)) for im in result.images]


def hook_count(module: torch.nn.Module) -> int:
    """Every forward (pre-)hook on the module tree: what ControlHook and odd_size_support add and remove."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())
