"""Networks in the published layouts with random weights, and a runtime that serves them without files."""

from __future__ import annotations

import torch

from annotator.neural.runtime import AnnotatorModels
from annotator.neural.weights import NetSpec, load_checked


def _randomised(net: torch.nn.Module, seed: int, scale: float) -> dict[str, torch.Tensor]:
    """The network's keys and shapes with values: PyTorch's default (random) initialisation, plus noise when
    `scale` > 0 (zero-initialised parameters then vary too), BatchNorm statistics spread out so that they
    matter."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in net.state_dict().items():
        if key.endswith("running_var"):
            value = torch.rand(value.shape, generator=generator) * 1.5 + 0.5
        elif key.endswith("running_mean"):
            value = torch.randn(value.shape, generator=generator) * 0.1
        elif value.is_floating_point() and scale > 0:
            value = value + torch.randn(value.shape, generator=generator) * scale
        state[key] = value
    return state


def random_state(spec: NetSpec, seed: int = 0, scale: float = 0.02) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return _randomised(spec.build(None), seed, scale)


def random_network(spec: NetSpec, seed: int = 0, scale: float = 0.0) -> torch.nn.Module:
    """The network loaded, through the same key check as a file, from a random state dict."""
    torch.manual_seed(seed)
    net = spec.build(None)
    state = _randomised(net, seed, scale)
    load_checked(net, state, file_name=spec.weight.name, title=spec.title, url=spec.weight.url())
    return net.eval().requires_grad_(False)


class PreloadedModels(AnnotatorModels):
    """The runtime (lock, device placement) with networks handed in instead of read from files."""

    def __init__(self, nets: dict[str, torch.nn.Module]):
        super().__init__(device="cpu")
        self.nets = nets

    def get(self, spec, folder=None):
        return self.nets[spec.weight.name]
