"""TEED (xavysp's Tiny and Efficient Edge Detector, 7_model.pth) for softedge_teed, and the same network
trained by TheMistoAI (MTEED.pth) for softedge_anyline, which lays lineart_standard's lines over its edges.

The network, with the upstream module names: two double-conv blocks (the first at stride 2), a max-pool and
one dense layer at stride 4, a 1x1 upsampling head per level (back to full size with transposed
convolutions) and a depth-wise "double fusion" of the three side outputs. Every activation is Smish,
x * tanh(log(1 + sigmoid(x))). It reads RGB in 0..255 as it is (the reference subtracts no mean).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..lineart_standard import line_strength
from ..util import apply_padded, gray_to_rgb, hwc3, resize_short_side
from .postprocess import safe_step
from .runtime import AnnotatorModels, default_models, image_tensor
from .weights import NetSpec, WeightFile


def smish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tanh(torch.log1p(torch.sigmoid(x)))


class _DoubleConv(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, stride: int = 1, last_act: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(mid, cout, 3, padding=1)
        self.last_act = last_act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(smish(self.conv1(x)))
        return smish(x) if self.last_act else x


class _SingleConv(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _DenseLayer(nn.Module):
    """0.5 * (conv(smish(conv(smish(x)))) + skip): the first 3x3 pads by 2, the second not at all."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=2)
        self.conv2 = nn.Conv2d(cout, cout, 3)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.conv2(smish(self.conv1(smish(x)))) + skip)


class _Smish(nn.Module):  # holds no weights; keeps the upstream Sequential indices
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return smish(x)


class _UpConv(nn.Module):
    """`levels` times: a 1x1 convolution (16 channels, 1 at the last), Smish, a x2 transposed convolution."""

    PADDING = {1: 0, 2: 1}

    def __init__(self, cin: int, levels: int):
        super().__init__()
        layers = []
        for i in range(levels):
            cout = 1 if i == levels - 1 else 16
            layers += [nn.Conv2d(cin, cout, 1), _Smish(),
                       nn.ConvTranspose2d(cout, cout, 2 ** levels, stride=2, padding=self.PADDING[levels])]
            cin = cout
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class _DoubleFusion(nn.Module):
    """Depth-wise 3x3 (3 -> 24 channels), then another (24 -> 24) added to it, summed over channels, Smish."""

    def __init__(self):
        super().__init__()
        self.DWconv1 = nn.Conv2d(3, 24, 3, padding=1, groups=3)
        self.DWconv2 = nn.Conv2d(24, 24, 3, padding=1, groups=24)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.DWconv1(smish(x))
        b = self.DWconv2(smish(a))
        return smish((a + b).sum(1, keepdim=True))


class _DenseBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.denselayer1 = _DenseLayer(cin, cout)


class Teed(nn.Module):
    """RGB in 0..255 (sides multiples of 8) -> four edge logit maps at full size: three levels and their fusion."""

    def __init__(self, _state=None):
        super().__init__()
        self.block_1 = _DoubleConv(3, 16, 16, stride=2)
        self.block_2 = _DoubleConv(16, 32, 32, last_act=False)
        self.dblock_3 = _DenseBlock(32, 48)
        self.side_1 = _SingleConv(16, 32, 2)
        self.pre_dense_3 = _SingleConv(32, 48, 1)
        self.up_block_1 = _UpConv(16, 1)
        self.up_block_2 = _UpConv(32, 1)
        self.up_block_3 = _UpConv(48, 2)
        self.block_cat = _DoubleFusion()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        block_1 = self.block_1(x)
        block_2 = self.block_2(block_1)
        block_2_down = F.max_pool2d(block_2, 3, stride=2, padding=1)
        block_3 = self.dblock_3.denselayer1(block_2_down + self.side_1(block_1), self.pre_dense_3(block_2_down))
        sides = [self.up_block_1(block_1), self.up_block_2(block_2), self.up_block_3(block_3)]
        return sides + [self.block_cat(torch.cat(sides, dim=1))]


_TEED_URL = "https://huggingface.co/bdsqlsz/qinglong_controlnet-lllite/blob/main/Annotators/7_model.pth"
_MTEED_URL = "https://huggingface.co/TheMistoAI/MistoLine/blob/main/Anyline/MTEED.pth"
TEED = NetSpec("TEED", WeightFile(("7_model.pth",), "TEED", urls={"7_model.pth": _TEED_URL}), Teed)
MTEED = NetSpec("MTEED (TEED for Anyline)", WeightFile(("MTEED.pth",), "TEED", urls={"MTEED.pth": _MTEED_URL}), Teed)

ANYLINE_RESOLUTION = 1280
# remove_small_objects(min_size=36, connectivity=1) runs on the reference's 3-channel copy of the line map,
# where a line of n pixels is 3n voxels: lines under 12 pixels go.
ANYLINE_MIN_PIXELS = 12


def teed_edges(img: np.ndarray, spec: NetSpec = TEED, models: AnnotatorModels | None = None) -> np.ndarray:
    """HxW float64 edge probability of an RGB uint8 image (sides multiples of 8): the sigmoid of the mean of
    the four outputs."""
    models = default_models() if models is None else models
    net = models.get(spec)
    height, width = img.shape[:2]
    with models.running(net) as device:
        outputs = [o[0, 0].float().cpu().numpy() for o in net(image_tensor(img, device))]
    outputs = [o if o.shape == (height, width) else cv2.resize(o, (width, height), interpolation=cv2.INTER_LINEAR)
               for o in outputs]
    return 1.0 / (1.0 + np.exp(-np.mean(np.stack(outputs, axis=2), axis=2).astype(np.float64)))


def edges_to_uint8(edge: np.ndarray, safe_steps: int) -> np.ndarray:
    if safe_steps != 0:
        edge = safe_step(edge, safe_steps)
    return (edge * 255.0).clip(0, 255).astype(np.uint8)


def softedge_teed(image: np.ndarray, resolution: float, safe_steps: float = 2,
                  models: AnnotatorModels | None = None) -> np.ndarray:
    img = resize_short_side(hwc3(image), resolution)
    return gray_to_rgb(apply_padded(img, lambda x: edges_to_uint8(teed_edges(x, TEED, models), int(safe_steps))))


def without_small_lines(lines: np.ndarray, min_pixels: int = ANYLINE_MIN_PIXELS) -> np.ndarray:
    """`lines` with every 4-connected group of non-zero pixels smaller than `min_pixels` set to 0."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats((lines > 0).astype(np.uint8), connectivity=4)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_pixels
    keep[0] = False  # the background
    return np.where(keep[labels], lines, 0).astype(lines.dtype)


def screen(base: np.ndarray, top: np.ndarray) -> np.ndarray:
    """The screen blend of two [0, 1] maps, 1 - (1 - top)(1 - base): lines of either show, neither darkens."""
    return 1.0 - (1.0 - top) * (1.0 - base)


def anyline_map(img: np.ndarray, safe_steps: int, models: AnnotatorModels | None = None) -> np.ndarray:
    """MTEED's edges with lineart_standard's lines (small specks removed) screened over them, as Anyline
    combines them in [0, 1] (the reference does the same arithmetic on uint8, where it wraps around)."""
    edges = edges_to_uint8(teed_edges(img, MTEED, models), safe_steps).astype(np.float64) / 255.0
    lines = without_small_lines(line_strength(img)).astype(np.float64) / 255.0
    return (screen(edges, lines) * 255.0).clip(0, 255).astype(np.uint8)


def softedge_anyline(image: np.ndarray, resolution: float, safe_steps: float = 2,
                     models: AnnotatorModels | None = None) -> np.ndarray:
    img = resize_short_side(hwc3(image), resolution)
    return gray_to_rgb(apply_padded(img, lambda x: anyline_map(x, int(safe_steps), models)))
