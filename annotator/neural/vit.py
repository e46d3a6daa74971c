"""Pieces shared by the transformer depth networks (MiDaS DPT-hybrid, Depth Anything V2): a pre-norm ViT
block with the timm/DINOv2 parameter names, and DPT's reassemble-and-fuse decoder parts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

VIT_LAYER_NORM_EPS = 1e-6


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """x + attn(norm1(x)), then x + mlp(norm2(x)); DINOv2 scales both branches (ls1, ls2)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, layer_scale: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=VIT_LAYER_NORM_EPS)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=VIT_LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        if layer_scale:
            self.ls1 = LayerScale(dim)
            self.ls2 = LayerScale(dim)
        self.layer_scale = layer_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.attn(self.norm1(x))
        x = x + (self.ls1(a) if self.layer_scale else a)
        m = self.mlp(self.norm2(x))
        return x + (self.ls2(m) if self.layer_scale else m)


# --- DPT decoder ----------------------------------------------------------------------------------------


class ResidualConvUnit(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(F.relu(x)))) + x


class FusionBlock(nn.Module):
    """Add the refined skip (resConfUnit1), refine (resConfUnit2), upsample (x2, or to `size`), project."""

    def __init__(self, features: int):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, size=None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
        return self.out_conv(x)


def make_scratch(in_channels: list[int], features: int) -> nn.Module:
    """DPT's "scratch": a 3x3 projection of each reassembled level to `features`, and four fusion blocks."""
    scratch = nn.Module()
    for index, channels in enumerate(in_channels, start=1):
        scratch.add_module(f"layer{index}_rn", nn.Conv2d(channels, features, 3, padding=1, bias=False))
    for index in range(1, 5):
        scratch.add_module(f"refinenet{index}", FusionBlock(features))
    return scratch


def fuse(scratch: nn.Module, levels: list[torch.Tensor], sized: bool) -> torch.Tensor:
    """Fine-to-coarse levels -> fused map at twice the finest level's size. `sized`: each fusion block
    upsamples to the next level's size (Depth Anything) instead of by exactly two (MiDaS)."""
    l1, l2, l3, l4 = (getattr(scratch, f"layer{i}_rn")(x) for i, x in enumerate(levels, start=1))
    path = scratch.refinenet4(l4, size=l3.shape[2:] if sized else None)
    path = scratch.refinenet3(path, l3, size=l2.shape[2:] if sized else None)
    path = scratch.refinenet2(path, l2, size=l1.shape[2:] if sized else None)
    return scratch.refinenet1(path, l1)
