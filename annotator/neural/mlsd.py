"""M-LSD straight line segments (mlsd_large_512_fp32.pth): a MobileNetV2 backbone with an upsampling head that
predicts, at half resolution, a line-centre heatmap and each centre's displacement to the two segment ends."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..util import apply_padded, gray_to_rgb, hwc3, resize_short_side
from .runtime import AnnotatorModels, default_models
from .weights import NetSpec, WeightFile


class _ConvBnRelu6(nn.Sequential):
    """Conv, BN, ReLU6; a stride-2 conv pads only right and bottom by one (TensorFlow "same")."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(nn.Conv2d(cin, cout, kernel, stride, 0 if stride == 2 else (kernel - 1) // 2, groups=groups,
                                   bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6())
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2:
            x = F.pad(x, (0, 1, 0, 1))
        return super().forward(x)


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.residual = stride == 1 and cin == cout
        layers = [_ConvBnRelu6(cin, hidden, 1)] if expand != 1 else []
        layers += [_ConvBnRelu6(hidden, hidden, stride=stride, groups=hidden), nn.Conv2d(hidden, cout, 1, bias=False),
                   nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class _Backbone(nn.Module):
    """The first 14 layers of MobileNetV2 (4 input channels); features after layers 1, 3, 6, 10 and 13."""

    TAPS = (1, 3, 6, 10, 13)

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = [_ConvBnRelu6(4, 32, stride=2)]
        cin = 32
        for expand, cout, repeats, stride in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                                              (6, 96, 3, 1)):
            for i in range(repeats):
                layers.append(_InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.TAPS:
                taps.append(x)
        return taps


def _conv_bn_relu(cin: int, cout: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=dilation * (kernel // 2), dilation=dilation),
                         nn.BatchNorm2d(cout), nn.ReLU())


class _Merge(nn.Module):
    """Project the skip feature (conv2) and the deeper one (conv1), upsample the deeper, concatenate."""

    def __init__(self, skip_in: int, deep_in: int, skip_out: int, deep_out: int, upscale: bool = True):
        super().__init__()
        self.conv1 = _conv_bn_relu(deep_in, deep_out, 1)
        self.conv2 = _conv_bn_relu(skip_in, skip_out, 1)
        self.upscale = upscale

    def forward(self, skip: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        deep = self.conv1(deep)
        if self.upscale:
            deep = F.interpolate(deep, scale_factor=2.0, mode="bilinear", align_corners=True)
        return torch.cat((self.conv2(skip), deep), dim=1)


class _Refine(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = _conv_bn_relu(cin, cin, 3)
        self.conv2 = _conv_bn_relu(cin, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x) + x)


class _Output(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = _conv_bn_relu(cin, cin, 3, dilation=5)
        self.conv2 = _conv_bn_relu(cin, cin, 3)
        self.conv3 = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.conv2(self.conv1(x)))


class MlsdLarge(nn.Module):
    """4-channel input in [-1, 1] -> 9 maps at half resolution: centre logits, 4 end displacements, and 4
    channels the line decoding does not use."""

    def __init__(self, _state=None):
        super().__init__()
        self.backbone = _Backbone()
        self.block15 = _Merge(64, 96, 64, 64, upscale=False)
        self.block16 = _Refine(128, 64)
        self.block17 = _Merge(32, 64, 64, 64)
        self.block18 = _Refine(128, 64)
        self.block19 = _Merge(24, 64, 64, 64)
        self.block20 = _Refine(128, 64)
        self.block21 = _Merge(16, 64, 64, 64)
        self.block22 = _Refine(128, 64)
        self.block23 = _Output(64, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1, c2, c3, c4, c5 = self.backbone(x)
        x = self.block16(self.block15(c4, c5))
        x = self.block18(self.block17(c3, x))
        x = self.block20(self.block19(c2, x))
        x = self.block22(self.block21(c1, x))
        return self.block23(x)[:, 7:]


MLSD = NetSpec("M-LSD large", WeightFile(("mlsd_large_512_fp32.pth",), "mlsd"), MlsdLarge)

TOP_K = 200
CENTRE_NMS = 3


def decode_segments(maps: torch.Tensor, score_threshold: float, distance_threshold: float) -> np.ndarray:
    """(N, 4) segments x0, y0, x1, y1 in input pixels from the 1x9xhxw output: the TOP_K strongest centres
    that are 3x3 local maxima, kept if their score exceeds `score_threshold` and their length (at half
    resolution) exceeds `distance_threshold`."""
    heat = torch.sigmoid(maps[0, 0])
    height, width = heat.shape
    peak = F.max_pool2d(heat[None, None], CENTRE_NMS, stride=1, padding=CENTRE_NMS // 2)[0, 0]
    heat = (heat * (peak == heat)).reshape(-1)
    scores, indices = torch.topk(heat, min(TOP_K, heat.numel()))
    scores, indices = scores.cpu().numpy(), indices.cpu().numpy()
    ys, xs = indices // width, indices % width
    ends = maps[0, 1:5].permute(1, 2, 0).float().cpu().numpy()[ys, xs]  # dx0, dy0, dx1, dy1
    lengths = np.sqrt((ends[:, 0] - ends[:, 2]) ** 2 + (ends[:, 1] - ends[:, 3]) ** 2)
    keep = (scores > score_threshold) & (lengths > distance_threshold)
    centres = np.stack([xs, ys, xs, ys], axis=1)[keep].astype(np.float64)
    return 2.0 * (centres + ends[keep])


def mlsd_lines(img: np.ndarray, score_threshold: float, distance_threshold: float,
               models: AnnotatorModels | None = None) -> np.ndarray:
    """HxW uint8: the detected segments drawn one pixel wide, white on black."""
    models = default_models() if models is None else models
    net = models.get(MLSD)
    x = np.concatenate([img.astype(np.float64), np.ones(img.shape[:2] + (1,))], axis=2) / 127.5 - 1.0
    with models.running(net) as device:
        maps = net(torch.from_numpy(x.transpose(2, 0, 1)[None].astype(np.float32)).to(device))
        segments = decode_segments(maps, score_threshold, distance_threshold)
    canvas = np.zeros(img.shape[:2], dtype=np.uint8)
    for x0, y0, x1, y1 in segments:
        cv2.line(canvas, (int(x0), int(y0)), (int(x1), int(y1)), 255, 1)
    return canvas


def mlsd(image: np.ndarray, resolution: float, score_threshold: float, distance_threshold: float,
         models: AnnotatorModels | None = None) -> np.ndarray:
    """The mlsd preprocessor: threshold A is the centre score, threshold B the minimum length."""
    img = resize_short_side(hwc3(image), resolution)
    return gray_to_rgb(apply_padded(img, lambda x: mlsd_lines(x, score_threshold, distance_threshold, models)))
