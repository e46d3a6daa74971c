"""LeReS (AdelaiDepth, res101.pth) for depth_leres, and with BoostingMonocularDepth's merge network
(latest_net_G.pth) for depth_leres++ (see leres_boost.py), in the published layouts.

- res101.pth holds `depth_model`: a ResNeXt-101 32x8d encoder (torchvision's layout, no classifier) whose
  four stage outputs a decoder of "feature transfer" blocks fuses from 1/32 back to full size.
- latest_net_G.pth is pix2pix's U-Net (10 levels, no normalisation) that merges a low- and a high-resolution
  estimate (two channels in [-1, 1]) into one.

Unlike the reference, which hands its uint8 RGB image to a transform meant for float images in [0, 1]
taken as BGR, the network gets what it was trained on: RGB in [0, 1], ImageNet-normalised.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..util import apply_padded, hwc3, resize_short_side
from .lineart import pix2pix_unet
from .runtime import AnnotatorModels, default_models
from .weights import NetSpec, WeightFile

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
BLOCKS = (3, 4, 23, 3)
GROUPS = 32
WIDTH_PER_GROUP = 8


# --- ResNeXt-101 32x8d ------------------------------------------------------------------------------------


class Bottleneck(nn.Module):
    """torchvision's bottleneck: 1x1, grouped 3x3 (carrying the stride), 1x1 to 4x `planes`, plus the input."""

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        width = planes * WIDTH_PER_GROUP * GROUPS // 64
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=GROUPS, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride != 1 or cin != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes * 4, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNeXt(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), BLOCKS), start=1):
            layers = []
            for i in range(blocks):
                layers.append(Bottleneck(cin, planes, 2 if i == 0 and index > 1 else 1))
                cin = planes * 4
            self.add_module(f"layer{index}", nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, stride=2, padding=1)
        features = []
        for index in range(1, 5):
            x = getattr(self, f"layer{index}")(x)
            features.append(x)
        return features


# --- LeReS decoder -----------------------------------------------------------------------------------------


def _upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class FTB(nn.Module):
    """Feature transfer block: 3x3 to `mid`, plus a ReLU-conv-BN-ReLU-conv residual branch, then ReLU. The
    branch's first ReLU runs in place upstream, so the sum adds the branch to the rectified input."""

    def __init__(self, cin: int, mid: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 3, padding=1)
        self.conv_branch = nn.Sequential(nn.ReLU(), nn.Conv2d(mid, mid, 3, padding=1), nn.BatchNorm2d(mid), nn.ReLU(),
                                         nn.Conv2d(mid, mid, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        return F.relu(x + self.conv_branch(x))


class FFM(nn.Module):
    """Feature fusion: the skip through an FTB, plus the coarser path, through another FTB, upsampled x2."""

    def __init__(self, cin: int, mid: int, cout: int):
        super().__init__()
        self.ftb1 = FTB(cin, mid)
        self.ftb2 = FTB(mid, cout)

    def forward(self, skip: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        return _upsample(self.ftb2(self.ftb1(skip) + coarse))


class AO(nn.Module):
    """Adaptive output: 3x3 to half the channels, BN, ReLU, 3x3 to one channel, upsampled x2."""

    def __init__(self, cin: int):
        super().__init__()
        self.adapt_conv = nn.Sequential(nn.Conv2d(cin, cin // 2, 3, padding=1), nn.BatchNorm2d(cin // 2), nn.ReLU(),
                                        nn.Conv2d(cin // 2, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _upsample(self.adapt_conv(x))


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = FTB(2048, 512)
        self.conv1 = nn.Conv2d(512, 256, 3, padding=1)
        self.ffm2 = FFM(1024, 256, 256)
        self.ffm1 = FFM(512, 256, 256)
        self.ffm0 = FFM(256, 256, 256)
        self.outconv = AO(256)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = _upsample(self.conv1(self.conv(features[3])))
        x = self.ffm2(features[2], x)
        x = self.ffm1(features[1], x)
        return self.outconv(self.ffm0(features[0], x))


class LeresDepth(nn.Module):
    """ImageNet-normalised RGB (sides multiples of 32) -> relative depth, 1 x 1 x H x W (far = large)."""

    def __init__(self, _state=None):
        super().__init__()
        self.depth_model = nn.Module()
        self.depth_model.encoder_modules = nn.Module()
        self.depth_model.encoder_modules.encoder = ResNeXt()
        self.depth_model.decoder_modules = Decoder()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.depth_model.decoder_modules(self.depth_model.encoder_modules.encoder(x))


class MergeNet(nn.Module):
    """(low-resolution estimate, high-resolution estimate) in [-1, 1] -> merged estimate in [-1, 1]."""

    def __init__(self, _state=None, downsamplings: int = 10, width: int = 64):
        super().__init__()
        self.model = pix2pix_unet(2, downsamplings, width, norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# res101.pth keeps the network under "depth_model" (read_model takes it from there).
LERES = NetSpec("LeReS (ResNeXt-101)", WeightFile(("res101.pth",), "leres"), LeresDepth)
MERGE = NetSpec("depth merge network (pix2pix U-Net)", WeightFile(("latest_net_G.pth",), "leres"), MergeNet)


def leres_estimate(net: LeresDepth, img: np.ndarray, width: int, height: int, device: torch.device) -> np.ndarray:
    """The network's depth of float RGB `img` (in [0, 1]) resized to width x height, resized back to the
    image's size (cubic); HxW float32."""
    x = (cv2.resize(img, (width, height)) - MEAN) / STD
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(device)
    out = net(x)[0, 0].float().cpu().numpy()
    return cv2.resize(out, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_CUBIC)


def depth_to_uint8(depth: np.ndarray, remove_near: float, remove_background: float) -> np.ndarray:
    """The reference's map: min-max to 16 bits, to 8 bits, pixels at or below `remove_near`% zeroed, inverted
    (near = bright), pixels at or below `remove_background`% zeroed."""
    low, high = float(depth.min()), float(depth.max())
    if high - low > np.finfo("float").eps:
        wide = (65535 * ((depth - low) / (high - low))).astype(np.uint16)
    else:
        wide = np.zeros(depth.shape, np.uint16)
    out = cv2.convertScaleAbs(wide, alpha=255.0 / 65535.0)
    if remove_near != 0:
        out = cv2.threshold(out, remove_near / 100 * 255, 255, cv2.THRESH_TOZERO)[1]
    out = cv2.bitwise_not(out)
    if remove_background != 0:
        out = cv2.threshold(out, remove_background / 100 * 255, 255, cv2.THRESH_TOZERO)[1]
    return out


def leres_depth(img: np.ndarray, boost: bool, models: AnnotatorModels | None = None) -> np.ndarray:
    """HxW float32 relative depth of an RGB uint8 image: one pass at the image's size, or (boost) the merged
    multi-resolution estimate."""
    models = default_models() if models is None else models
    net = models.get(LERES)
    rgb = img.astype(np.float32) / 255.0
    height, width = img.shape[:2]
    if not boost:
        with models.running(net) as device:
            return leres_estimate(net, rgb, width, height, device)
    from .leres_boost import boosted_depth

    merge = models.get(MERGE)
    with models.running(net, merge) as device:
        return boosted_depth(rgb, lambda x, w, h: leres_estimate(net, x, w, h, device),
                             lambda x: merge(x.to(device)).float().cpu(), max(width, height))


def depth_leres(image: np.ndarray, resolution: float, remove_near: float = 0.0, remove_background: float = 0.0,
                boost: bool = False, models: AnnotatorModels | None = None) -> np.ndarray:
    img = resize_short_side(hwc3(image), resolution)
    return cv2.cvtColor(apply_padded(img, lambda x: depth_to_uint8(leres_depth(x, boost, models), remove_near,
                                                                  remove_background)), cv2.COLOR_GRAY2RGB)
