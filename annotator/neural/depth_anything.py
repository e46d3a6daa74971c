"""Depth Anything (V1 and V2): a DINOv2 ViT (patch 14) with a DPT head, in the layout of the published
checkpoints (V2: depth_anything_v2_vit{s,b,l}.pth, or the reference's depth_anything_v2_vitl.safetensors;
V1: depth_anything_vit{s,b,l}14.pth); the size is read from the file. The two versions have the same
layout and differ in the blocks the head reads: V1 takes the last four, V2 four spread over the depth."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..util import apply_padded, gray_to_rgb, hwc3, resize_short_side
from .runtime import AnnotatorModels, default_models
from .vit import Block, fuse, make_scratch
from .weights import NetSpec, WeightFile

PATCH = 14
TRAIN_SIZE = 518  # 37 x 37 patches: the position embedding's grid
POS_OFFSET = 0.1  # DINOv2's work-around when interpolating the position embedding
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


@dataclass(frozen=True)
class Size:
    dim: int
    depth: int
    heads: int
    features: int
    channels: tuple[int, int, int, int]
    taps: tuple[int, int, int, int]  # blocks whose outputs feed the head (V2)

    @property
    def last_four(self) -> tuple[int, int, int, int]:
        """V1's taps: `get_intermediate_layers(x, 4)`, the last four blocks."""
        return tuple(range(self.depth - 4, self.depth))


SIZES = {
    384: Size(384, 12, 6, 64, (48, 96, 192, 384), (2, 5, 8, 11)),  # vits
    768: Size(768, 12, 12, 128, (96, 192, 384, 768), (2, 5, 8, 11)),  # vitb
    1024: Size(1024, 24, 16, 256, (256, 512, 1024, 1024), (4, 11, 17, 23)),  # vitl
}


class DinoV2(nn.Module):
    def __init__(self, size: Size, image_size: int = TRAIN_SIZE):
        super().__init__()
        grid = image_size // PATCH
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, size.dim, PATCH, stride=PATCH)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, size.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, size.dim))
        self.mask_token = nn.Parameter(torch.zeros(1, size.dim))  # training only; part of the files
        self.blocks = nn.ModuleList(Block(size.dim, size.heads, layer_scale=True) for _ in range(size.depth))
        self.norm = nn.LayerNorm(size.dim, eps=1e-6)

    def position_embedding(self, rows: int, cols: int) -> torch.Tensor:
        """The 37x37 grid resized (bicubic) to rows x cols, the way DINOv2 does it: through a scale factor of
        (n + 0.1) / 37, which the output size then truncates to n."""
        grid = self.pos_embed.shape[1] - 1
        side = int(round(grid ** 0.5))
        if rows == cols == side:
            return self.pos_embed
        patches = self.pos_embed[:, 1:].float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
        scale = ((rows + POS_OFFSET) / side, (cols + POS_OFFSET) / side)
        patches = F.interpolate(patches, scale_factor=scale, mode="bicubic", antialias=False)
        if patches.shape[2:] != (rows, cols):
            raise ValueError(f"position embedding resized to {tuple(patches.shape[2:])}, not {(rows, cols)}")
        patches = patches.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return torch.cat([self.pos_embed[:, :1], patches.to(self.pos_embed.dtype)], dim=1)

    def intermediate(self, x: torch.Tensor, taps: tuple[int, ...]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(normed patch tokens, normed class token) after each block in `taps`."""
        rows, cols = x.shape[2] // PATCH, x.shape[3] // PATCH
        tokens = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = tokens + self.position_embedding(rows, cols)
        out = []
        for index, block in enumerate(self.blocks):
            tokens = block(tokens)
            if index in taps:
                normed = self.norm(tokens)
                out.append((normed[:, 1:], normed[:, 0]))
        return out


class DepthHead(nn.Module):
    def __init__(self, size: Size):
        super().__init__()
        c = size.channels
        self.projects = nn.ModuleList(nn.Conv2d(size.dim, ch, 1) for ch in c)
        self.resize_layers = nn.ModuleList([nn.ConvTranspose2d(c[0], c[0], 4, stride=4),
                                            nn.ConvTranspose2d(c[1], c[1], 2, stride=2), nn.Identity(),
                                            nn.Conv2d(c[3], c[3], 3, stride=2, padding=1)])
        self.scratch = make_scratch(list(c), size.features)
        self.scratch.output_conv1 = nn.Conv2d(size.features, size.features // 2, 3, padding=1)
        self.scratch.output_conv2 = nn.Sequential(nn.Conv2d(size.features // 2, 32, 3, padding=1), nn.ReLU(),
                                                  nn.Conv2d(32, 1, 1), nn.ReLU(), nn.Identity())

    def forward(self, features, rows: int, cols: int) -> torch.Tensor:
        levels = []
        for (tokens, _cls), project, resize in zip(features, self.projects, self.resize_layers):
            grid = tokens.permute(0, 2, 1).reshape(tokens.shape[0], tokens.shape[-1], rows, cols)
            levels.append(resize(project(grid)))
        out = self.scratch.output_conv1(fuse(self.scratch, levels, sized=True))
        out = F.interpolate(out, (rows * PATCH, cols * PATCH), mode="bilinear", align_corners=True)
        return self.scratch.output_conv2(out)


class DepthAnythingV2(nn.Module):
    """ImageNet-normalised RGB (sides multiples of 14) -> relative inverse depth (1 x H x W, >= 0)."""

    def __init__(self, size: Size, image_size: int = TRAIN_SIZE, v1: bool = False):
        super().__init__()
        self.size = size
        self.taps = size.last_four if v1 else size.taps
        self.pretrained = DinoV2(size, image_size)
        self.depth_head = DepthHead(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, cols = x.shape[2] // PATCH, x.shape[3] // PATCH
        features = self.pretrained.intermediate(x, self.taps)
        return F.relu(self.depth_head(features, rows, cols)).squeeze(1)


def build_from_state(state: Mapping[str, torch.Tensor] | None, v1: bool = False) -> DepthAnythingV2:
    """The size whose embedding width the file has (ViT-L when there is no state)."""
    dim = 1024 if state is None else int(state["pretrained.cls_token"].shape[-1])
    if dim not in SIZES:
        raise ValueError(f"an embedding width of {dim} is none of ViT-S/B/L (384/768/1024)")
    return DepthAnythingV2(SIZES[dim], v1=v1)


def build_v1_from_state(state: Mapping[str, torch.Tensor] | None) -> DepthAnythingV2:
    return build_from_state(state, v1=True)


_V2_REPOS = {
    "depth_anything_v2_vitl.safetensors": "https://huggingface.co/MackinationsAi/Depth-Anything-V2_Safetensors",
    "depth_anything_v2_vitl.pth": "https://huggingface.co/depth-anything/Depth-Anything-V2-Large",
    "depth_anything_v2_vitb.pth": "https://huggingface.co/depth-anything/Depth-Anything-V2-Base",
    "depth_anything_v2_vits.pth": "https://huggingface.co/depth-anything/Depth-Anything-V2-Small",
}
DEPTH_ANYTHING_V2 = NetSpec("Depth Anything V2", WeightFile(tuple(_V2_REPOS), "depth_anything_v2", repos=_V2_REPOS),
                            build_from_state)
_V1_PAGE = "https://huggingface.co/spaces/LiheYoung/Depth-Anything/blob/main/checkpoints/"
_V1_URLS = {name: _V1_PAGE + name for name in
            ("depth_anything_vitl14.pth", "depth_anything_vitb14.pth", "depth_anything_vits14.pth")}
DEPTH_ANYTHING_V1 = NetSpec("Depth Anything", WeightFile(tuple(_V1_URLS), "depth_anything", urls=_V1_URLS),
                            build_v1_from_state)


def network_input(img: np.ndarray) -> np.ndarray:
    """The reference's transform: scale (cubic, in float) so both sides are at least 518 and multiples of 14,
    keeping the aspect ratio; ImageNet normalisation; 1x3xHxW float32."""
    height, width = img.shape[:2]
    scale = max(TRAIN_SIZE / height, TRAIN_SIZE / width)

    def fit(x: float) -> int:
        y = int(np.round(x / PATCH) * PATCH)
        return y if y >= TRAIN_SIZE else int(np.ceil(x / PATCH) * PATCH)

    x = cv2.resize(img / 255.0, (fit(scale * width), fit(scale * height)), interpolation=cv2.INTER_CUBIC)
    x = (x - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]).astype(np.float32)


def depth_anything_v2_depth(img: np.ndarray, models: AnnotatorModels | None = None,
                            spec: NetSpec = DEPTH_ANYTHING_V2) -> np.ndarray:
    """HxW uint8 relative depth (near = bright) of an RGB uint8 image."""
    models = default_models() if models is None else models
    net = models.get(spec)
    height, width = img.shape[:2]
    with models.running(net) as device:
        depth = net(torch.from_numpy(network_input(img)).to(device))
        depth = F.interpolate(depth[None], (height, width), mode="bilinear", align_corners=False)[0, 0]
        low, high = depth.min(), depth.max()
        if not high > low:  # a flat prediction: no depth to show (the reference would divide by zero)
            return np.zeros((height, width), dtype=np.uint8)
        return ((depth - low) / (high - low) * 255.0).float().cpu().numpy().astype(np.uint8)


def depth_anything_v2(image: np.ndarray, resolution: float, models: AnnotatorModels | None = None) -> np.ndarray:
    img = resize_short_side(hwc3(image), resolution)
    return gray_to_rgb(apply_padded(img, lambda x: depth_anything_v2_depth(x, models)))


def depth_anything(image: np.ndarray, resolution: float, models: AnnotatorModels | None = None) -> np.ndarray:
    """V1: the same pre- and post-processing as V2 (the reference's two detectors are identical but for
    the network)."""
    img = resize_short_side(hwc3(image), resolution)
    return gray_to_rgb(apply_padded(img, lambda x: depth_anything_v2_depth(x, models, DEPTH_ANYTHING_V1)))
