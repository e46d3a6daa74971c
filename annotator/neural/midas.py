"""MiDaS v3 DPT-Hybrid (dpt_hybrid-midas-501f0c75.pt): depth_midas and normal_midas.

The backbone is timm's `vit_base_resnet50_384`, written here with timm's parameter names: a ResNet-v2-50
stem and first three stages (weight-standardised convolutions with TensorFlow "same" padding, group norm)
whose stride-16 features become the tokens of a ViT-B/16. DPT reassembles the ResNet's stride-4 and
stride-8 features and ViT blocks 8 and 11 into a four-level pyramid and fuses it into inverse depth.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..util import apply_padded, gray_to_rgb, hwc3, resize_short_side
from .runtime import AnnotatorModels, default_models, image_tensor
from .vit import Block, fuse, make_scratch
from .weights import NetSpec, WeightFile

WS_EPS = 1e-8  # timm builds the hybrid's convolutions with StdConv2dSame(eps=1e-8)
GROUPS = 32
VIT_DIM = 768
VIT_DEPTH = 12
VIT_HEADS = 12
PATCH = 16
TRAIN_GRID = 24  # 384 / 16
HOOKS = (8, 11)  # ViT blocks feeding the two coarse levels
FEATURES = 256


def pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """TensorFlow "SAME" padding: the output has ceil(size / stride) pixels; any odd pixel goes right/bottom."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


class StdConv2dSame(nn.Conv2d):
    """Convolution with per-filter standardised weights and "same" padding (no bias)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
        super().__init__(cin, cout, kernel, stride=stride, padding=0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        w = F.batch_norm(w.reshape(1, w.shape[0], -1), None, None, training=True, momentum=0.0, eps=WS_EPS)
        return F.conv2d(pad_same(x, self.kernel_size[0], self.stride[0]), w.reshape_as(self.weight), None,
                        self.stride)


class GroupNormAct(nn.GroupNorm):
    def __init__(self, channels: int, act: bool = True):
        super().__init__(GROUPS, channels, eps=1e-5)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        return F.relu(x) if self.act else x


class _Downsample(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv = StdConv2dSame(cin, cout, 1, stride)
        self.norm = GroupNormAct(cout, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 with group norm, added to the (projected) input, then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        mid = cout // 4
        self.downsample = _Downsample(cin, cout, stride) if stride != 1 or cin != cout else None
        self.conv1 = StdConv2dSame(cin, mid, 1)
        self.norm1 = GroupNormAct(mid)
        self.conv2 = StdConv2dSame(mid, mid, 3, stride)
        self.norm2 = GroupNormAct(mid)
        self.conv3 = StdConv2dSame(mid, cout, 1)
        self.norm3 = GroupNormAct(cout, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.norm1(self.conv1(x))
        x = self.norm2(self.conv2(x))
        return F.relu(self.norm3(self.conv3(x)) + shortcut)


class _Stage(nn.Module):
    def __init__(self, cin: int, cout: int, depth: int, stride: int):
        super().__init__()
        self.blocks = nn.Sequential(*[Bottleneck(cin if i == 0 else cout, cout, stride if i == 0 else 1)
                                      for i in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class ResNetV2Stem(nn.Module):
    """Stem (7x7/2 conv, norm, 3x3/2 max-pool) and stages of 3, 4 and 9 bottlenecks: 256, 512, 1024 channels
    at strides 4, 8 and 16. Returns every stage's output."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Module()
        self.stem.conv = StdConv2dSame(3, 64, 7, 2)
        self.stem.norm = GroupNormAct(64)
        self.stages = nn.Sequential(_Stage(64, 256, 3, 1), _Stage(256, 512, 4, 2), _Stage(512, 1024, 9, 2))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem.norm(self.stem.conv(x))
        x = F.max_pool2d(pad_same(x, 3, 2, value=float("-inf")), 3, 2)
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs


class HybridViT(nn.Module):
    """timm's VisionTransformer over ResNet features (the `pretrained.model` of the file)."""

    def __init__(self):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.backbone = ResNetV2Stem()
        self.patch_embed.proj = nn.Conv2d(1024, VIT_DIM, 1)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, VIT_DIM))
        self.pos_embed = nn.Parameter(torch.zeros(1, TRAIN_GRID * TRAIN_GRID + 1, VIT_DIM))
        self.blocks = nn.ModuleList(Block(VIT_DIM, VIT_HEADS) for _ in range(VIT_DEPTH))
        self.norm = nn.LayerNorm(VIT_DIM, eps=1e-6)  # part of the file; DPT reads the blocks before it

    def position_embedding(self, rows: int, cols: int) -> torch.Tensor:
        grid = self.pos_embed[:, 1:].reshape(1, TRAIN_GRID, TRAIN_GRID, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(rows, cols), mode="bilinear", align_corners=False)
        return torch.cat([self.pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)], dim=1)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(ResNet stage outputs, tokens after the HOOKS blocks)."""
        rows, cols = x.shape[2] // PATCH, x.shape[3] // PATCH
        stages = self.patch_embed.backbone(x)
        tokens = self.patch_embed.proj(stages[-1]).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = tokens + self.position_embedding(rows, cols)
        hooked = []
        for index, block in enumerate(self.blocks):
            tokens = block(tokens)
            if index in HOOKS:
                hooked.append(tokens)
            if index == HOOKS[-1]:
                break
        return stages, hooked


class _Readout(nn.Module):
    """Each patch token concatenated with the class token, projected back to the token width."""

    def __init__(self):
        super().__init__()
        self.project = nn.Sequential(nn.Linear(2 * VIT_DIM, VIT_DIM), nn.GELU())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, 1:]
        return self.project(torch.cat([patches, tokens[:, :1].expand_as(patches)], dim=-1))


def _postprocess(extra: nn.Module | None) -> nn.Sequential:
    """Readout at index 0 and the projection at index 3, as the file numbers them (1, 2 are reshapes)."""
    layers = [_Readout(), nn.Identity(), nn.Identity(), nn.Conv2d(VIT_DIM, VIT_DIM, 1)]
    return nn.Sequential(*(layers + ([extra] if extra is not None else [])))


class MidasDptHybrid(nn.Module):
    """RGB in [-1, 1] (sides multiples of 32) -> inverse relative depth (1 x H x W, >= 0)."""

    def __init__(self, _state=None):
        super().__init__()
        self.pretrained = nn.Module()
        self.pretrained.model = HybridViT()
        self.pretrained.act_postprocess3 = _postprocess(None)
        self.pretrained.act_postprocess4 = _postprocess(nn.Conv2d(VIT_DIM, VIT_DIM, 3, stride=2, padding=1))
        self.scratch = make_scratch([256, 512, VIT_DIM, VIT_DIM], FEATURES)
        self.scratch.output_conv = nn.Sequential(
            nn.Conv2d(FEATURES, FEATURES // 2, 3, padding=1), nn.Upsample(scale_factor=2, mode="bilinear",
                                                                          align_corners=True),
            nn.Conv2d(FEATURES // 2, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 1, 1), nn.ReLU(), nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, cols = x.shape[2] // PATCH, x.shape[3] // PATCH
        stages, (tokens3, tokens4) = self.pretrained.model(x)
        levels = [stages[0], stages[1]]
        for tokens, post in ((tokens3, self.pretrained.act_postprocess3), (tokens4, self.pretrained.act_postprocess4)):
            grid = post[0](tokens).transpose(1, 2).reshape(tokens.shape[0], VIT_DIM, rows, cols)
            for layer in list(post)[3:]:
                grid = layer(grid)
            levels.append(grid)
        return self.scratch.output_conv(fuse(self.scratch, levels, sized=False)).squeeze(1)


MIDAS = NetSpec("MiDaS v3 DPT-Hybrid", WeightFile(("dpt_hybrid-midas-501f0c75.pt",), "midas"), MidasDptHybrid,
                ignore=("pretrained.model.head.*",))  # timm's ImageNet classifier, saved with the model

NORMAL_STRENGTH = 2.0 * np.pi  # the reference's `a`: the z component against the depth gradient


def midas_depth(img: np.ndarray, models: AnnotatorModels | None = None) -> np.ndarray:
    """HxW float32 inverse relative depth of an RGB uint8 image whose sides are multiples of 32."""
    models = default_models() if models is None else models
    net = models.get(MIDAS)
    with models.running(net) as device:
        x = image_tensor(img, device) / 127.5 - 1.0
        return net(x)[0].float().cpu().numpy()


def relative(depth: np.ndarray) -> np.ndarray:
    """depth - min, divided by its maximum (in the reference's order of operations); flat -> zeros."""
    shifted = depth - depth.min()
    peak = shifted.max()
    return shifted / peak if peak > 0 else shifted


def depth_to_uint8(depth: np.ndarray) -> np.ndarray:
    return (relative(depth) * 255.0).clip(0, 255).astype(np.uint8)


def normal_from_depth(depth: np.ndarray, background_threshold: float, strength: float = NORMAL_STRENGTH
                      ) -> np.ndarray:
    """The reference's normal_midas: normals (Sobel x, Sobel y, strength) of the inverse depth, flat where the
    normalised depth is below `background_threshold`; as RGB = (z, y, x) * 127.5 + 127.5."""
    scaled = relative(depth)
    x = cv2.Sobel(depth, cv2.CV_32F, 1, 0, ksize=3)
    y = cv2.Sobel(depth, cv2.CV_32F, 0, 1, ksize=3)
    x[scaled < background_threshold] = 0
    y[scaled < background_threshold] = 0
    normal = np.stack([x, y, np.full_like(x, strength)], axis=2)
    normal /= np.sum(normal ** 2.0, axis=2, keepdims=True) ** 0.5
    return (normal * 127.5 + 127.5).clip(0, 255).astype(np.uint8)[:, :, ::-1].copy()


def depth_midas(image: np.ndarray, resolution: float, models: AnnotatorModels | None = None) -> np.ndarray:
    img = resize_short_side(hwc3(image), resolution)
    return gray_to_rgb(apply_padded(img, lambda x: depth_to_uint8(midas_depth(x, models))))


def normal_midas(image: np.ndarray, resolution: float, background_threshold: float,
                 models: AnnotatorModels | None = None) -> np.ndarray:
    img = resize_short_side(hwc3(image), resolution)
    return apply_padded(img, lambda x: normal_from_depth(midas_depth(x, models), background_threshold))
