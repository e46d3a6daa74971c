"""seg_ufade20k: UniFormer-S with an UPerNet head (mmsegmentation), trained on ADE20K, in the layout of the
published upernet_global_small.pth (lllyasviel/ControlNet annotator/ckpts: an mmseg checkpoint whose
`state_dict` holds `backbone.*`, `decode_head.*` and the training-only `auxiliary_head.*`).

The backbone: four stages at strides 4, 8, 16, 32 (64, 128, 320, 512 channels; 3, 4, 8, 3 blocks); the first
two stages are convolutional blocks (depth-wise 5x5 "attention", BatchNorm), the last two global
self-attention blocks (head width 64). The head: pyramid pooling on the last stage, an FPN over all four,
one 1x1 classifier over 150 classes. The map is each pixel's class in the ADE20K palette.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..util import hwc3, resize_short_side
from .runtime import AnnotatorModels, default_models
from .seg_palettes import ADE20K
from .weights import NetSpec, WeightFile

EMBED_DIMS = (64, 128, 320, 512)
DEPTHS = (3, 4, 8, 3)
HEAD_DIM = 64
HEAD_CHANNELS = 512
POOL_SCALES = (1, 2, 3, 6)
CLASSES = 150
# The network was trained on RGB (mmcv reads files as BGR, and the test pipeline's to_rgb flips them) with this
# normalisation. The reference hands mmseg an RGB array, which that flip turns into BGR; we feed RGB.
MEAN = np.array([123.675, 116.28, 103.53])
STD = np.array([58.395, 57.12, 57.375])
TEST_SCALE = (2048, 512)  # mmseg's ADE20K test scale: long side <= 2048, short side <= 512, aspect kept


class PatchEmbed(nn.Module):
    def __init__(self, in_dim: int, dim: int, patch: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Conv2d(in_dim, dim, patch, stride=patch)

    def forward(self, x):
        x = self.proj(x)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvBlock(nn.Module):
    """UniFormer's CBlock: position conv, then local aggregation (1x1, depth-wise 5x5, 1x1), then a conv MLP."""

    def __init__(self, dim: int):
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.BatchNorm2d(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.attn = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Conv2d(dim, dim * 4, 1)
        self.mlp.fc2 = nn.Conv2d(dim * 4, dim, 1)

    def forward(self, x):
        x = x + self.pos_embed(x)
        x = x + self.conv2(self.attn(self.conv1(self.norm1(x))))
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))


class SelfAttention(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.heads = dim // HEAD_DIM
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class AttentionBlock(nn.Module):
    """UniFormer's SABlock: position conv, then global multi-head self-attention and an MLP over the tokens."""

    def __init__(self, dim: int):
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SelfAttention(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(dim, dim * 4)
        self.mlp.fc2 = nn.Linear(dim * 4, dim)

    def forward(self, x):
        x = x + self.pos_embed(x)
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        tokens = tokens + self.attn(self.norm1(tokens))
        tokens = tokens + self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(tokens))))
        return tokens.transpose(1, 2).reshape(b, c, h, w)


class UniFormer(nn.Module):
    def __init__(self, dims=EMBED_DIMS, depths=DEPTHS):
        super().__init__()
        in_dims = (3,) + tuple(dims[:-1])
        for i, (in_dim, dim, depth, patch) in enumerate(zip(in_dims, dims, depths, (4, 2, 2, 2)), start=1):
            block = ConvBlock if i <= 2 else AttentionBlock
            self.add_module(f"patch_embed{i}", PatchEmbed(in_dim, dim, patch))
            self.add_module(f"blocks{i}", nn.ModuleList(block(dim) for _ in range(depth)))
            self.add_module(f"norm{i}", nn.LayerNorm(dim, eps=1e-6))

    def forward(self, x) -> list[torch.Tensor]:
        out = []
        for i in range(1, 5):
            x = getattr(self, f"patch_embed{i}")(x)
            for block in getattr(self, f"blocks{i}"):
                x = block(x)
            out.append(getattr(self, f"norm{i}")(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
        return out


class ConvModule(nn.Module):
    """mmcv's ConvModule with BatchNorm: conv (no bias), norm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class UperHead(nn.Module):
    """mmseg's UPerHead: pyramid pooling on the deepest level, a top-down FPN, all levels fused, classified."""

    def __init__(self, in_channels=EMBED_DIMS, channels: int = HEAD_CHANNELS, classes: int = CLASSES,
                 pool_scales=POOL_SCALES):
        super().__init__()
        self.psp_modules = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(scale), ConvModule(in_channels[-1], channels, 1))
            for scale in pool_scales)
        self.bottleneck = ConvModule(in_channels[-1] + len(pool_scales) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList(ConvModule(c, channels, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvModule(channels, channels, 3) for _ in in_channels[:-1])
        self.fpn_bottleneck = ConvModule(len(in_channels) * channels, channels, 3)
        self.conv_seg = nn.Conv2d(channels, classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        top = features[-1]
        pooled = [_resize(module(top), top.shape[2:]) for module in self.psp_modules]
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, features)]
        laterals.append(self.bottleneck(torch.cat([top, *pooled], dim=1)))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + _resize(laterals[i], laterals[i - 1].shape[2:])
        outs = [conv(lateral) for conv, lateral in zip(self.fpn_convs, laterals)] + [laterals[-1]]
        outs = [outs[0]] + [_resize(o, outs[0].shape[2:]) for o in outs[1:]]
        return self.conv_seg(self.fpn_bottleneck(torch.cat(outs, dim=1)))


class UniFormerUperNet(nn.Module):
    """Normalised BGR (N x 3 x H x W) -> class logits at the input size (N x 150 x H x W)."""

    def __init__(self):
        super().__init__()
        self.backbone = UniFormer()
        self.decode_head = UperHead()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _resize(self.decode_head(self.backbone(x)), x.shape[2:])


UNIFORMER = NetSpec(
    "UniFormer-S UPerNet (ADE20K)",
    WeightFile(("upernet_global_small.pth",), "uniformer",
               urls={"upernet_global_small.pth":
                     "https://huggingface.co/lllyasviel/ControlNet/blob/main/annotator/ckpts/upernet_global_small.pth"}),
    lambda state: UniFormerUperNet(),
    ignore=("auxiliary_head.*",),  # the FCN head used for the training loss only
)


def test_size(height: int, width: int, scale: tuple[int, int] | None = None) -> tuple[int, int]:
    """mmcv's imrescale to mmseg's test scale: the largest size within (long 2048, short 512), aspect kept,
    rounded half up. Returns (height, width)."""
    scale = TEST_SCALE if scale is None else scale
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def network_input(img: np.ndarray) -> np.ndarray:
    """RGB uint8 -> 1x3xhxw float32 as mmseg feeds the network: rescaled (bilinear, on uint8) to the test
    scale, normalised."""
    height, width = img.shape[:2]
    new_h, new_w = test_size(height, width)
    if (new_h, new_w) != (height, width):
        img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    x = (img.astype(np.float32) - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]).astype(np.float32)


def class_map(net: nn.Module, img: np.ndarray, device: torch.device) -> np.ndarray:
    """HxW class indices: the logits resized (bilinear) back to the image, then the best class per pixel."""
    logits = net(torch.from_numpy(network_input(img)).to(device))
    logits = _resize(logits, img.shape[:2])
    return logits.argmax(dim=1)[0].cpu().numpy()


def pad_to(img: np.ndarray, multiple: int = 64) -> np.ndarray:
    height, width = img.shape[:2]
    return np.pad(img, [(0, -height % multiple), (0, -width % multiple), (0, 0)], mode="edge")


def seg_ufade20k(image: np.ndarray, resolution: float, models: AnnotatorModels | None = None) -> np.ndarray:
    """The ADE20K-coloured class map at processing resolution (the reference's "segmentation" module)."""
    models = default_models() if models is None else models
    img = resize_short_side(hwc3(image), resolution)
    height, width = img.shape[:2]
    net = models.get(UNIFORMER)
    with models.running(net) as device:
        classes = class_map(net, pad_to(img), device)[:height, :width]
    return np.ascontiguousarray(ADE20K[classes])
