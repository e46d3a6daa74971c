"""normal_bae: Bae et al.'s surface-normal network with uncertainty (scannet.pt), in plain torch.

The encoder is gen-efficientnet's `tf_efficientnet_b5_ap` (TensorFlow-compatible EfficientNet-B5: "same"
padding, BatchNorm eps 1e-3, swish), written here with gen-efficientnet's parameter names. The decoder
upsamples with skip connections and refines the normal at 1/8, 1/4, 1/2 and full resolution with per-pixel
MLPs; at inference every pixel is refined (the training-time point sampling is not needed).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..util import apply_padded, hwc3, resize_short_side
from .runtime import AnnotatorModels, default_models, image_tensor
from .weights import NetSpec, WeightFile

BN_EPS = 1e-3
CHANNEL_MULTIPLIER = 1.6
DEPTH_MULTIPLIER = 2.2
SE_RATIO = 0.25
# Per stage: block type, repeats, kernel, stride, expansion, output channels (EfficientNet-B0, before scaling).
STAGES = (("ds", 1, 3, 1, 1, 16), ("ir", 2, 3, 2, 6, 24), ("ir", 2, 5, 2, 6, 40), ("ir", 3, 3, 2, 6, 80),
          ("ir", 3, 5, 1, 6, 112), ("ir", 4, 5, 2, 6, 192), ("ir", 1, 3, 1, 6, 320))
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def round_channels(channels: float, divisor: int = 8) -> int:
    """EfficientNet's channel rounding: to the nearest multiple of `divisor`, never more than 10% down."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


class SameConv2d(nn.Conv2d):
    """TensorFlow "same" convolution: static symmetric padding where it is possible (stride 1, odd kernel),
    otherwise padded per input size with the odd pixel on the right/bottom."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = False):
        static = stride == 1 and (kernel - 1) % 2 == 0
        super().__init__(cin, cout, kernel, stride=stride, padding=(kernel - 1) // 2 if static else 0, groups=groups,
                         bias=bias)
        self.dynamic = not static

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic:
            k, s = self.kernel_size[0], self.stride[0]
            pads = []
            for size in (x.shape[-1], x.shape[-2]):
                total = max((math.ceil(size / s) - 1) * s + k - size, 0)
                pads += [total // 2, total - total // 2]
            x = F.pad(x, pads)
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, reduced, 1)
        self.conv_expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv_expand(F.silu(self.conv_reduce(x.mean((2, 3), keepdim=True)))))


class DepthwiseSeparable(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int):
        super().__init__()
        self.residual = stride == 1 and cin == cout
        self.conv_dw = SameConv2d(cin, cin, kernel, stride, groups=cin)
        self.bn1 = _bn(cin)
        self.se = SqueezeExcite(cin, round_channels(cin * SE_RATIO, 1))
        self.conv_pw = SameConv2d(cin, cout, 1)
        self.bn2 = _bn(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv_pw(self.se(F.silu(self.bn1(self.conv_dw(x))))))
        return y + x if self.residual else y


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        mid = round_channels(cin * expansion)
        self.residual = stride == 1 and cin == cout
        self.conv_pw = SameConv2d(cin, mid, 1)
        self.bn1 = _bn(mid)
        self.conv_dw = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self.bn2 = _bn(mid)
        self.se = SqueezeExcite(mid, round_channels(cin * SE_RATIO, 1))  # reduced from the block's input width
        self.conv_pwl = SameConv2d(mid, cout, 1)
        self.bn3 = _bn(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.silu(self.bn1(self.conv_pw(x)))
        y = self.se(F.silu(self.bn2(self.conv_dw(y))))
        y = self.bn3(self.conv_pwl(y))
        return y + x if self.residual else y


class EfficientNetB5(nn.Module):
    """Stem, seven stages of MBConv blocks, 1x1 head to 2048 channels. Returns the stage outputs and the
    head convolution's output (before its BatchNorm, which the normal decoder does not use)."""

    def __init__(self):
        super().__init__()
        stem = round_channels(32 * CHANNEL_MULTIPLIER)
        self.conv_stem = SameConv2d(3, stem, 3, 2)
        self.bn1 = _bn(stem)
        stages, cin = [], stem
        for kind, repeats, kernel, stride, expansion, channels in STAGES:
            cout = round_channels(channels * CHANNEL_MULTIPLIER)
            blocks = []
            for i in range(int(math.ceil(repeats * DEPTH_MULTIPLIER))):
                s = stride if i == 0 else 1
                blocks.append(DepthwiseSeparable(cin, cout, kernel, s) if kind == "ds"
                              else InvertedResidual(cin, cout, kernel, s, expansion))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        features = round_channels(1280 * CHANNEL_MULTIPLIER)
        self.conv_head = SameConv2d(cin, features, 1)
        self.bn2 = _bn(features)  # in the file, unused by the decoder

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        x = F.silu(self.bn1(self.conv_stem(x)))
        outputs = []
        for stage in self.blocks:
            x = stage(x)
            outputs.append(x)
        return outputs, self.conv_head(x)


class _UpSample(nn.Module):
    """Upsample to the skip's size (bilinear, corners aligned), concatenate, two conv-BN-LeakyReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self._net = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU(),
                                  nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU())

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=True)
        return self._net(torch.cat([x, skip], dim=1))


def _pixel_mlp(cin: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(cin, 128, 1), nn.ReLU(), nn.Conv1d(128, 128, 1), nn.ReLU(),
                         nn.Conv1d(128, 128, 1), nn.ReLU(), nn.Conv1d(128, 4, 1))


def normalise_prediction(out: torch.Tensor) -> torch.Tensor:
    """(nx, ny, nz, kappa): the normal made unit length, kappa = elu + 1.01 (a concentration > 0)."""
    normal, kappa = out[:, :3], out[:, 3:]
    norm = torch.sqrt((normal ** 2.0).sum(dim=1, keepdim=True)) + 1e-10
    return torch.cat([normal / norm, F.elu(kappa) + 1.0 + 0.01], dim=1)


class NormalDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv2 = nn.Conv2d(2048, 2048, 1)
        self.up1 = _UpSample(2048 + 176, 1024)
        self.up2 = _UpSample(1024 + 64, 512)
        self.up3 = _UpSample(512 + 40, 256)
        self.up4 = _UpSample(256 + 24, 128)
        self.out_conv_res8 = nn.Conv2d(512, 4, 3, padding=1)
        self.out_conv_res4 = _pixel_mlp(512 + 4)
        self.out_conv_res2 = _pixel_mlp(256 + 4)
        self.out_conv_res1 = _pixel_mlp(128 + 4)

    @staticmethod
    def _refine(mlp: nn.Module, features: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        features = F.interpolate(features, scale_factor=2, mode="bilinear", align_corners=True)
        coarse = F.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=True)
        x = torch.cat([features, coarse], dim=1)
        b, c, h, w = x.shape
        return normalise_prediction(mlp(x.view(b, c, h * w))).view(b, 4, h, w)

    def forward(self, stages: list[torch.Tensor], head: torch.Tensor) -> torch.Tensor:
        """Full-resolution (nx, ny, nz, kappa)."""
        d1 = self.up1(self.conv2(head), stages[4])
        d2 = self.up2(d1, stages[2])
        d3 = self.up3(d2, stages[1])
        d4 = self.up4(d3, stages[0])
        out = normalise_prediction(self.out_conv_res8(d2))
        out = self._refine(self.out_conv_res4, d2, out)
        out = self._refine(self.out_conv_res2, d3, out)
        return self._refine(self.out_conv_res1, d4, out)


class NormalBae(nn.Module):
    """ImageNet-normalised RGB (sides multiples of 32) -> 1 x 4 x H x W (unit normal, kappa)."""

    def __init__(self, _state=None):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.original_model = EfficientNetB5()
        self.decoder = NormalDecoder()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(*self.encoder.original_model(x))


NORMAL_BAE = NetSpec("normal_bae (EfficientNet-B5 encoder)", WeightFile(("scannet.pt",), "normal_bae"), NormalBae)


def normal_bae_map(img: np.ndarray, models: AnnotatorModels | None = None) -> np.ndarray:
    """HxWx3 uint8: the normal's x, y, z mapped from [-1, 1] to 0..255 as R, G, B."""
    models = default_models() if models is None else models
    net = models.get(NORMAL_BAE)
    with models.running(net) as device:
        x = image_tensor(img, device) / 255.0
        normal = net((x - MEAN.to(device)) / STD.to(device))[0, :3]
        normal = ((normal + 1) * 0.5).clip(0, 1).permute(1, 2, 0).float().cpu().numpy()
    return (normal * 255.0).clip(0, 255).astype(np.uint8)


def normal_bae(image: np.ndarray, resolution: float, models: AnnotatorModels | None = None) -> np.ndarray:
    img = resize_short_side(hwc3(image), resolution)
    return apply_padded(img, lambda x: normal_bae_map(x, models))
