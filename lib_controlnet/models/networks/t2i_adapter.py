"""T2I-Adapters (Mou et al. 2023) in TencentARC's original key layout, built from shapes read off the file.

Three networks:

- `Adapter` (the "full" adapters: `t2iadapter_*_sd14v1`, `*_sd15v2`, the SDXL ones): pixel-unshuffle, `conv_in`,
  then `body.{level * num_res_blocks + r}` ResNet blocks (`in_conv` where the width changes, `block1`,
  `block2`, optional `skep` and `down_opt.op`); one feature per level.
- `LightAdapter` (`*_light`: `body.{level}.in_conv / body.{r}.block1,2 / out_conv`).
- `StyleAdapter` (`t2iadapter_style_sd14v1`: CLIP-L image tokens -> 8 context tokens).

Downsampling uses avg-pool with `ceil_mode` (diffusers' choice; the original floors): the same result at
sizes that halve evenly, and at odd sizes the features keep the UNet's own block sizes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

Shapes = Mapping[str, tuple[int, ...]]

SDXL_UNSHUFFLE = 16  # SDXL adapters see the hint at 1/16: their first feature sits at the UNet's 1/2 level
SD_UNSHUFFLE = 8


@dataclass(frozen=True)
class AdapterArch:
    layout: str  # "full" or "light"
    unshuffle_in: int  # channels after pixel-unshuffle (conv_in's / the first in_conv's input)
    channels: tuple[int, ...]  # width of each feature
    num_res_blocks: int
    kernel: int = 1  # full adapters: kernel of in_conv / block2 / skep (published files: 1)
    conv_down: bool = False  # full adapters: a stride-2 conv instead of avg-pool (`down_opt.op.weight`)
    skip_convs: bool = False  # full adapters: `skep` convs on the residual path

    @property
    def unshuffle(self) -> int:
        """SDXL adapters take 1 or 3 channels at 16x16 (256 / 768 inputs), SD1.x ones at 8x8 (64 / 192)."""
        return SDXL_UNSHUFFLE if self.layout == "full" and self.unshuffle_in in (256, 768) else SD_UNSHUFFLE

    @property
    def in_channels(self) -> int:
        """The hint channels the network reads: 1 for grey adapters (sketch, canny), 3 otherwise."""
        return self.unshuffle_in // (self.unshuffle * self.unshuffle)

    @property
    def is_sdxl(self) -> bool:
        return self.unshuffle == SDXL_UNSHUFFLE

    def downsamples(self, level: int) -> bool:
        """Whether a level starts with a 2x downsample. SD1.x: every level after the first; SDXL: only the
        third (its features sit at the UNet's 1/2, 1/2, 1/4, 1/4 levels)."""
        return level == 2 if self.is_sdxl else level > 0


@dataclass(frozen=True)
class StyleArch:
    width: int  # CLIP-L vision width (1024)
    context_dim: int  # the UNet's text width (768)
    num_tokens: int  # tokens appended to the context (8)
    layers: int
    heads: int = 8  # not in the shapes; every published style adapter uses 8


def _indices(shapes: Shapes, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in shapes if (m := rx.match(k))})


def adapter_arch_from_shapes(shapes: Shapes) -> AdapterArch:
    """Describe a full or light adapter from its original-layout key names and shapes."""
    if "body.0.in_conv.weight" in shapes and "body.0.out_conv.weight" in shapes:
        levels = _indices(shapes, r"body\.(\d+)\.out_conv\.weight$")
        return AdapterArch(
            layout="light",
            unshuffle_in=shapes["body.0.in_conv.weight"][1],
            channels=tuple(shapes[f"body.{i}.out_conv.weight"][0] for i in levels),
            num_res_blocks=len(_indices(shapes, r"body\.0\.body\.(\d+)\.block1\.weight$")),
        )
    blocks = _indices(shapes, r"body\.(\d+)\.block1\.weight$")
    conv_in = shapes["conv_in.weight"]
    width = conv_in[0]
    # Every published full adapter has 4 levels: [c, 2c, 4c, 4c]; the blocks per level follow from the count.
    channels = (width, 2 * width, 4 * width, 4 * width)
    if len(blocks) % len(channels):
        raise ValueError(f"{len(blocks)} adapter blocks do not split into {len(channels)} levels")
    per_level = len(blocks) // len(channels)
    found = tuple(shapes[f"body.{level * per_level}.block1.weight"][0] for level in range(len(channels)))
    if found != channels:
        channels = found  # scaled-down test adapters and odd widths: read each level's width off its block
    return AdapterArch(
        layout="full",
        unshuffle_in=conv_in[1],
        channels=channels,
        num_res_blocks=per_level,
        kernel=shapes["body.0.block2.weight"][2],
        conv_down=any(k.endswith("down_opt.op.weight") for k in shapes),
        skip_convs=any(".skep." in k for k in shapes),
    )


def style_arch_from_shapes(shapes: Shapes) -> StyleArch:
    _, tokens, width = shapes["style_embedding"]
    return StyleArch(
        width=width,
        context_dim=shapes["proj"][1],
        num_tokens=tokens,
        layers=len(_indices(shapes, r"transformer_layes\.(\d+)\.")),
    )


def _down(channels: int, conv: bool) -> nn.Module:
    if conv:
        return _Op(nn.Conv2d(channels, channels, 3, stride=2, padding=1))
    return _Op(nn.AvgPool2d(2, 2, ceil_mode=True))


class _Op(nn.Module):
    """`down_opt.op`: the original's Downsample wrapper, kept for its key names."""

    def __init__(self, op: nn.Module):
        super().__init__()
        self.op = op

    def forward(self, x):
        return self.op(x)


class ResnetBlock(nn.Module):
    def __init__(self, in_c: int, out_c: int, *, down: bool, kernel: int, skip_conv: bool, conv_down: bool):
        super().__init__()
        pad = kernel // 2
        self.down_opt = _down(in_c, conv_down) if down else None
        self.in_conv = nn.Conv2d(in_c, out_c, kernel, padding=pad) if in_c != out_c or skip_conv else None
        self.block1 = nn.Conv2d(out_c, out_c, 3, padding=1)
        self.block2 = nn.Conv2d(out_c, out_c, kernel, padding=pad)
        self.skep = nn.Conv2d(in_c, out_c, kernel, padding=pad) if skip_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down_opt is not None:
            x = self.down_opt(x)
        if self.in_conv is not None:
            x = self.in_conv(x)
        h = self.block2(F.relu(self.block1(x)))
        return h + (self.skep(x) if self.skep is not None else x)


class Adapter(nn.Module):
    def __init__(self, arch: AdapterArch):
        super().__init__()
        self.arch = arch
        self.unshuffle = nn.PixelUnshuffle(arch.unshuffle)
        self.conv_in = nn.Conv2d(arch.unshuffle_in, arch.channels[0], 3, padding=1)
        body = []
        for level, width in enumerate(arch.channels):
            for r in range(arch.num_res_blocks):
                first = r == 0
                in_c = arch.channels[level - 1] if first and level > 0 else width
                body.append(ResnetBlock(in_c, width, down=first and arch.downsamples(level), kernel=arch.kernel,
                                        skip_conv=arch.skip_convs, conv_down=arch.conv_down))
        self.body = nn.ModuleList(body)

    def forward(self, hint: torch.Tensor) -> list[torch.Tensor]:
        x = self.conv_in(self.unshuffle(hint))
        features = []
        n = self.arch.num_res_blocks
        for level in range(len(self.arch.channels)):
            for block in self.body[level * n:(level + 1) * n]:
                x = block(x)
            features.append(x)
        return features


class LightResnetBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.block2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block2(F.relu(self.block1(x))) + x


class LightBlock(nn.Module):
    """The original's `extractor`: 1x1 in, ResNet blocks at a quarter of the width, 1x1 out."""

    def __init__(self, in_c: int, out_c: int, num_res_blocks: int, *, down: bool):
        super().__init__()
        inner = out_c // 4
        self.down_opt = _down(in_c, False) if down else None
        self.in_conv = nn.Conv2d(in_c, inner, 1)
        self.body = nn.Sequential(*[LightResnetBlock(inner) for _ in range(num_res_blocks)])
        self.out_conv = nn.Conv2d(inner, out_c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down_opt is not None:
            x = self.down_opt(x)
        return self.out_conv(self.body(self.in_conv(x)))


class LightAdapter(nn.Module):
    def __init__(self, arch: AdapterArch):
        super().__init__()
        self.arch = arch
        self.unshuffle = nn.PixelUnshuffle(arch.unshuffle)
        widths = (arch.unshuffle_in, *arch.channels)
        self.body = nn.ModuleList(
            LightBlock(widths[i], widths[i + 1], arch.num_res_blocks, down=i > 0) for i in range(len(arch.channels))
        )

    def forward(self, hint: torch.Tensor) -> list[torch.Tensor]:
        x = self.unshuffle(hint)
        features = []
        for block in self.body:
            x = block(x)
            features.append(x)
        return features


def build_adapter(arch: AdapterArch) -> nn.Module:
    return LightAdapter(arch) if arch.layout == "light" else Adapter(arch)


# --- style adapter ---------------------------------------------------------------------------------------------


class LayerNorm32(nn.LayerNorm):
    """LayerNorm in float32 whatever the weights' dtype (the original's fp16-safe LayerNorm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(),
                            self.eps).to(x.dtype)


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """CLIP's transformer block (key names `attn.in_proj_weight`, `ln_1`, `mlp.c_fc`, `mlp.c_proj`, `ln_2`)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = LayerNorm32(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, width * 4))
        self.mlp.add_module("gelu", QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(width * 4, width))
        self.ln_2 = LayerNorm32(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class StyleAdapter(nn.Module):
    def __init__(self, arch: StyleArch):
        super().__init__()
        self.arch = arch
        self.transformer_layes = nn.Sequential(
            *[ResidualAttentionBlock(arch.width, arch.heads) for _ in range(arch.layers)])  # sic: the file's name
        self.style_embedding = nn.Parameter(torch.zeros(1, arch.num_tokens, arch.width))
        self.ln_pre = LayerNorm32(arch.width)
        self.ln_post = LayerNorm32(arch.width)
        self.proj = nn.Parameter(torch.zeros(arch.width, arch.context_dim))

    def forward(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """CLIP vision last_hidden_state [N, L, width] -> context tokens [N, num_tokens, context_dim]."""
        style = self.style_embedding.to(image_tokens.dtype).expand(image_tokens.shape[0], -1, -1)
        x = self.ln_pre(torch.cat([image_tokens, style], dim=1))
        x = self.transformer_layes(x)
        return self.ln_post(x[:, -self.arch.num_tokens:]) @ self.proj.to(x.dtype)
