"""Soft edges: lllyasviel's HED re-implementation (ControlNetHED.pth) and PiDiNet (table5_pidinet.pth), and the
reference's softedge_*, scribble_* and t2ia_sketch_pidi maps made from them."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..util import apply_padded, gray_to_rgb, hwc3, resize_short_side
from .postprocess import safe_step, scribble_from_soft_edges, to_uint8
from .runtime import AnnotatorModels, default_models, image_tensor
from .weights import NetSpec, WeightFile

# --- HED ------------------------------------------------------------------------------------------------


class _HedStage(nn.Module):
    """`layers` 3x3 convolutions with ReLU (after a 2x2 max-pool unless first), and a 1x1 side output."""

    def __init__(self, cin: int, cout: int, layers: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1) for i in range(layers))
        self.projection = nn.Conv2d(cout, 1, 1)

    def forward(self, x: torch.Tensor, pool: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if pool:
            x = F.max_pool2d(x, 2, 2)
        for conv in self.convs:
            x = F.relu(conv(x))
        return x, self.projection(x)


class HedNet(nn.Module):
    """VGG-16-like stages on RGB in 0..255 minus a learnt mean (`norm`); five side outputs, coarse to fine."""

    def __init__(self, _state=None):
        super().__init__()
        self.norm = nn.Parameter(torch.zeros(1, 3, 1, 1))
        widths = ((3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3))
        for index, (cin, cout, layers) in enumerate(widths, start=1):
            self.add_module(f"block{index}", _HedStage(cin, cout, layers))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = x - self.norm
        sides = []
        for index in range(1, 6):
            h, side = getattr(self, f"block{index}")(h, pool=index > 1)
            sides.append(side)
        return sides


HED = NetSpec("HED (ControlNetHED)", WeightFile(("ControlNetHED.pth",), "hed"), HedNet)


def hed_edges(img: np.ndarray, models: AnnotatorModels | None = None) -> np.ndarray:
    """HxW float64 edge probability of an RGB uint8 image: the five side outputs resized (bilinear) to the
    image, averaged, through a sigmoid."""
    models = default_models() if models is None else models
    net = models.get(HED)
    height, width = img.shape[:2]
    with models.running(net) as device:
        x = image_tensor(img, device)
        sides = [s[0, 0].float().cpu().numpy() for s in net(x)]
    sides = [cv2.resize(s, (width, height), interpolation=cv2.INTER_LINEAR) for s in sides]
    mean = np.mean(np.stack(sides, axis=2), axis=2).astype(np.float64)
    return 1.0 / (1.0 + np.exp(-mean))


# --- PiDiNet ------------------------------------------------------------------------------------------

# Which pixel-difference convolution each of the 16 3x3 layers uses in the published "carv4" model:
# cd = central difference, ad = angular difference, rd = radial difference (5x5), cv = plain.
CARV4 = ("cd", "ad", "rd", "cv") * 4
PIDINET_WIDTH = 60
PIDINET_DILATION_CHANNELS = 24
# ad: each tap minus its clockwise neighbour on the 3x3 ring (the centre minus itself).
_CLOCKWISE = (3, 0, 1, 6, 4, 2, 7, 8, 5)
# rd: the 8 ring taps (flat indices 1..8 of the 3x3 kernel) go to the outer ring of a 5x5 kernel and,
# negated, to its inner ring.
_RD_OUTER = (0, 2, 4, 10, 14, 20, 22, 24)
_RD_INNER = (6, 7, 8, 11, 13, 16, 17, 18)


class PixelDifferenceConv(nn.Module):
    """A 3x3 convolution whose kernel acts on pixel differences; computed as the plain convolution with the
    equivalent kernel, so `weight` keeps the published 3x3 shape."""

    def __init__(self, kind: str, cin: int, cout: int, groups: int = 1):
        super().__init__()
        self.kind = kind
        self.groups = groups
        self.weight = nn.Parameter(torch.zeros(cout, cin // groups, 3, 3))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)

    def kernel(self) -> tuple[torch.Tensor, int]:
        w = self.weight
        if self.kind == "cv":
            return w, 1
        if self.kind == "cd":  # sum_i w_i (x_i - x_centre)
            centre = torch.zeros_like(w)
            centre[:, :, 1, 1] = w.sum(dim=(2, 3))
            return w - centre, 1
        flat = w.flatten(2)
        if self.kind == "ad":
            return (flat - flat[:, :, list(_CLOCKWISE)]).view_as(w), 1
        if self.kind == "rd":
            big = w.new_zeros(w.shape[0], w.shape[1], 25)
            big[:, :, list(_RD_OUTER)] = flat[:, :, 1:]
            big[:, :, list(_RD_INNER)] = -flat[:, :, 1:]
            return big.view(w.shape[0], w.shape[1], 5, 5), 2
        raise ValueError(f"unknown pixel difference convolution {self.kind!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel, padding = self.kernel()
        return F.conv2d(x, kernel, None, 1, padding, 1, self.groups)


class _PdcBlock(nn.Module):
    def __init__(self, kind: str, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        if stride > 1:
            self.shortcut = nn.Conv2d(cin, cout, 1)
        self.conv1 = PixelDifferenceConv(kind, cin, cin, groups=cin)
        self.conv2 = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = F.max_pool2d(x, 2, 2)
        y = self.conv2(F.relu(self.conv1(x)))
        return y + (self.shortcut(x) if self.stride > 1 else x)


class _DilationModule(nn.Module):
    """CDCM: 1x1 to 24 channels, then four dilated 3x3 convolutions (5, 7, 9, 11) summed."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 1)
        for index, dilation in enumerate((5, 7, 9, 11), start=1):
            self.add_module(f"conv2_{index}", nn.Conv2d(cout, cout, 3, padding=dilation, dilation=dilation, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(F.relu(x))
        return self.conv2_1(x) + self.conv2_2(x) + self.conv2_3(x) + self.conv2_4(x)


class _SpatialAttention(nn.Module):
    """CSAM: x times a sigmoid mask computed from relu(x)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 4, 1)
        self.conv2 = nn.Conv2d(4, 1, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv2(self.conv1(F.relu(x))))


class _MapReduce(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class PiDiNet(nn.Module):
    """PiDiNet with CDCM and CSAM side branches (the published table-5 model), on BGR in [0, 1]. Returns the
    four side edge maps and the fused map, each a probability at the input size."""

    def __init__(self, _state=None, kinds: tuple[str, ...] = CARV4, width: int = PIDINET_WIDTH,
                 dilation_channels: int = PIDINET_DILATION_CHANNELS):
        super().__init__()
        self.init_block = PixelDifferenceConv(kinds[0], 3, width)
        planes = [width, 2 * width, 4 * width, 4 * width]
        layer = 1
        for stage, cout in enumerate(planes, start=1):
            cin = planes[stage - 2] if stage > 1 else width
            for index in range(1, 4 if stage == 1 else 5):
                stride = 2 if stage > 1 and index == 1 else 1
                block = _PdcBlock(kinds[layer], cin if index == 1 else cout, cout, stride)
                self.add_module(f"block{stage}_{index}", block)
                layer += 1
        self.dilations = nn.ModuleList(_DilationModule(p, dilation_channels) for p in planes)
        self.attentions = nn.ModuleList(_SpatialAttention(dilation_channels) for _ in planes)
        self.conv_reduces = nn.ModuleList(_MapReduce(dilation_channels) for _ in planes)
        self.classifier = nn.Conv2d(4, 1, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        height, width = x.shape[2:]
        h = self.init_block(x)
        stage_outputs = []
        for stage in range(1, 5):
            for index in range(1, 4 if stage == 1 else 5):
                h = getattr(self, f"block{stage}_{index}")(h)
            stage_outputs.append(h)
        sides = [F.interpolate(reduce(attend(dilate(s))), (height, width), mode="bilinear", align_corners=False)
                 for s, dilate, attend, reduce in zip(stage_outputs, self.dilations, self.attentions,
                                                       self.conv_reduces)]
        fused = self.classifier(torch.cat(sides, dim=1))
        return [torch.sigmoid(s) for s in sides + [fused]]


PIDINET = NetSpec("PiDiNet", WeightFile(("table5_pidinet.pth",), "pidinet"), PiDiNet)


def pidinet_edges(img: np.ndarray, models: AnnotatorModels | None = None) -> np.ndarray:
    """HxW float32 fused edge probability of an RGB uint8 image (the network reads BGR in [0, 1])."""
    models = default_models() if models is None else models
    net = models.get(PIDINET)
    with models.running(net) as device:
        x = image_tensor(img[:, :, ::-1], device)
        return net(x / 255.0)[-1][0, 0].float().cpu().numpy()


# --- the preprocessors -------------------------------------------------------------------------------------

SKETCH_THRESHOLD = 0.5


def _padded(image: np.ndarray, resolution: float, fn) -> np.ndarray:
    """The reference's frame: short side to `resolution`, edge-padded to a multiple of 64, cropped back."""
    return apply_padded(resize_short_side(hwc3(image), resolution), fn)


def softedge_hed(image: np.ndarray, resolution: float, *, safe: bool = False,
                 models: AnnotatorModels | None = None) -> np.ndarray:
    def run(img):
        edge = hed_edges(img, models)
        return to_uint8(safe_step(edge) if safe else edge)

    return gray_to_rgb(_padded(image, resolution, run))


def softedge_pidinet(image: np.ndarray, resolution: float, *, safe: bool = False,
                     models: AnnotatorModels | None = None) -> np.ndarray:
    def run(img):
        edge = pidinet_edges(img, models)
        return to_uint8(safe_step(edge) if safe else edge)

    return gray_to_rgb(_padded(image, resolution, run))


def sketch_pidinet(image: np.ndarray, resolution: float, models: AnnotatorModels | None = None) -> np.ndarray:
    """t2ia_sketch_pidi: PiDiNet edges above 0.5, white on black."""

    def run(img):
        return np.where(pidinet_edges(img, models) > SKETCH_THRESHOLD, 255, 0).astype(np.uint8)

    return gray_to_rgb(_padded(image, resolution, run))


def scribble_hed(image: np.ndarray, resolution: float, models: AnnotatorModels | None = None) -> np.ndarray:
    return gray_to_rgb(scribble_from_soft_edges(softedge_hed(image, resolution, models=models)[:, :, 0]))


def scribble_pidinet(image: np.ndarray, resolution: float, models: AnnotatorModels | None = None) -> np.ndarray:
    return gray_to_rgb(scribble_from_soft_edges(softedge_pidinet(image, resolution, models=models)[:, :, 0]))
