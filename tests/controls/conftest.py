"""A tiny ldm UNet (sdkit's UNetModel) and a host around it: SD's noise schedule and a fixed 'VAE'.

The VAE stand-in is deterministic and simple (8x8 mean, a fixed 3->4 channel mix) so every expectation can
be written out by hand; the real VAEs are exercised in the standalone host's tests.
"""

import pytest
import torch
import torch.nn.functional as F

from lib_controlnet.hook.host import HostInfo, sd_alphas_cumprod
from tests.tiny_models import SD_LIKE_UNET, ldm_unet

MIX = torch.tensor([[0.5, 0.2, -0.3], [0.1, -0.4, 0.6], [-0.2, 0.3, 0.3], [0.4, 0.4, 0.1]])


def fake_encode(pixels01: torch.Tensor) -> torch.Tensor:
    pooled = F.avg_pool2d(pixels01 * 2 - 1, 8)
    return torch.einsum("oc,nchw->nohw", MIX, pooled)


def host(prediction: str = "eps") -> HostInfo:
    return HostInfo(alphas_cumprod=sd_alphas_cumprod(), prediction=prediction, encode_image=fake_encode, family="sd1")


@pytest.fixture(scope="module")
def unet():
    return ldm_unet(SD_LIKE_UNET, seed=21)


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 16, 16, generator=g)
    t = torch.tensor([601.0, 601.0])
    ctx = torch.randn(2, 5, 32, generator=g)
    image = torch.rand(1, 3, 128, 128, generator=g)
    return x, t, ctx, image
