"""The SDXL UNet in sgm's key layout (Stability-AI/generative-models `openaimodel.UNetModel`), built from shapes.

ldm's UNetModel (which runs SD1.x/2.x here) cannot express SDXL: a transformer depth per level (1, 2, 10)
and the `label_emb` MLP over the 2816-wide `y` (pooled text + size embeddings). This module builds the same
network from the ldm blocks the ControlNet core already has, block by block from the checkpoint's own keys
and shapes, so the published file and the reduced-width demo load key for key. What shapes cannot tell is
fixed by the family: 64-wide attention heads (`num_head_channels: 64` in sd_xl_base.yaml).

Called as `unet(x, timesteps, context, y)` with `input_blocks`, `middle_block`, `output_blocks`: the layout
the ControlNet hook and `odd_sizes` expect.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lib_controlnet.errors import ModelFileError
from lib_controlnet.models.networks.ldm_blocks import (
    Downsample,
    GroupNorm32,
    ResBlock,
    SpatialTransformer,
    TimestepSequential,
    timestep_embedding,
)

Shapes = Mapping[str, tuple[int, ...]]
HEAD_DIM = 64


class Upsample(nn.Module):
    """Nearest ×2, then a 3×3 conv (`output_blocks.N.K.conv`); the class name is what odd_sizes looks for."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


@dataclass(frozen=True)
class BlockSpec:
    """One entry of input_blocks/output_blocks: a downsample, or a ResBlock with an optional transformer
    (depth) and an optional upsample after it."""

    in_channels: int
    out_channels: int
    depth: int | None = None  # None: no transformer
    down: bool = False
    upsample: bool = False


@dataclass(frozen=True)
class SgmLayout:
    in_channels: int
    model_channels: int
    out_channels: int
    adm_in_channels: int | None
    context_dim: int
    linear: bool
    input_blocks: tuple[BlockSpec, ...]  # after input_blocks.0 (the conv_in)
    middle_depth: int
    output_blocks: tuple[BlockSpec, ...]
    head_dim: int = HEAD_DIM

    @property
    def time_embed_dim(self) -> int:
        return self.model_channels * 4


def _count(shapes: Shapes, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in shapes if (m := rx.match(k))})


def _depth(shapes: Shapes, prefix: str) -> int | None:
    if f"{prefix}.norm.weight" not in shapes:
        return None
    return _count(shapes, re.escape(prefix) + r"\.transformer_blocks\.(\d+)\.")


def layout_from_shapes(shapes: Shapes) -> SgmLayout:
    """The network described by a state dict's keys (without `model.diffusion_model.`)."""
    try:
        model_channels, in_channels = shapes["input_blocks.0.0.weight"][:2]
        out_channels = shapes["out.2.weight"][0]
        inputs = []
        for n in range(1, _count(shapes, r"input_blocks\.(\d+)\.")):
            if f"input_blocks.{n}.0.op.weight" in shapes:
                c = shapes[f"input_blocks.{n}.0.op.weight"][0]
                inputs.append(BlockSpec(c, c, down=True))
            else:
                inputs.append(BlockSpec(shapes[f"input_blocks.{n}.0.in_layers.2.weight"][1],
                                        shapes[f"input_blocks.{n}.0.out_layers.3.weight"][0],
                                        _depth(shapes, f"input_blocks.{n}.1")))
        outputs = []
        for n in range(_count(shapes, r"output_blocks\.(\d+)\.")):
            depth = _depth(shapes, f"output_blocks.{n}.1")
            up_at = 1 if depth is None else 2
            outputs.append(BlockSpec(shapes[f"output_blocks.{n}.0.in_layers.2.weight"][1],
                                     shapes[f"output_blocks.{n}.0.out_layers.3.weight"][0], depth,
                                     upsample=f"output_blocks.{n}.{up_at}.conv.weight" in shapes))
        middle_depth = _depth(shapes, "middle_block.1")
        to_k = next(v for k, v in shapes.items() if k.endswith("attn2.to_k.weight"))
        proj_in = next(v for k, v in shapes.items() if k.endswith("proj_in.weight"))
    except (KeyError, StopIteration) as e:
        raise ModelFileError(f"the UNet does not have the SDXL (sgm) layout (missing {e})") from None
    if middle_depth is None:
        raise ModelFileError("the UNet's middle block has no transformer: not the SDXL layout")
    adm = shapes.get("label_emb.0.0.weight")
    return SgmLayout(in_channels, model_channels, out_channels, adm[1] if adm else None, to_k[1], len(proj_in) == 2,
                     tuple(inputs), middle_depth, tuple(outputs))


class SgmUNet(nn.Module):
    def __init__(self, layout: SgmLayout):
        super().__init__()
        self.layout = layout
        mc, ted = layout.model_channels, layout.time_embed_dim
        self.model_channels = mc
        self.num_classes = "sequential" if layout.adm_in_channels else None

        def block(spec: BlockSpec) -> TimestepSequential:
            if spec.down:
                return TimestepSequential(Downsample(spec.in_channels))
            layers: list[nn.Module] = [ResBlock(spec.in_channels, ted, spec.out_channels)]
            if spec.depth is not None:
                heads = max(1, spec.out_channels // layout.head_dim)
                layers.append(SpatialTransformer(spec.out_channels, spec.depth, layout.context_dim, heads,
                                                 layout.linear))
            if spec.upsample:
                layers.append(Upsample(spec.out_channels))
            return TimestepSequential(*layers)

        self.time_embed = nn.Sequential(nn.Linear(mc, ted), nn.SiLU(), nn.Linear(ted, ted))
        if layout.adm_in_channels:
            self.label_emb = nn.Sequential(
                nn.Sequential(nn.Linear(layout.adm_in_channels, ted), nn.SiLU(), nn.Linear(ted, ted)))
        self.input_blocks = nn.ModuleList(
            [TimestepSequential(nn.Conv2d(layout.in_channels, mc, 3, padding=1)), *map(block, layout.input_blocks)])
        ch = layout.input_blocks[-1].out_channels
        self.middle_block = TimestepSequential(
            ResBlock(ch, ted, ch),
            SpatialTransformer(ch, layout.middle_depth, layout.context_dim, max(1, ch // layout.head_dim),
                               layout.linear),
            ResBlock(ch, ted, ch),
        )
        self.output_blocks = nn.ModuleList(map(block, layout.output_blocks))
        last = layout.output_blocks[-1].out_channels
        self.out = nn.Sequential(GroupNorm32(32, last), nn.SiLU(), nn.Conv2d(last, layout.out_channels, 3, padding=1))

    def forward(self, x, timesteps=None, context=None, y=None, **kwargs):
        if (y is None) != (self.num_classes is None):
            raise ValueError("this UNet needs y (SDXL's pooled text and size embedding)" if y is None
                             else "this UNet takes no y")
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels).to(x.dtype))
        if y is not None:
            emb = emb + self.label_emb(y.to(x.dtype))
        h, skips = x, []
        for module in self.input_blocks:
            h = module(h, emb, context)
            skips.append(h)
        h = self.middle_block(h, emb, context)
        for module in self.output_blocks:
            h = module(torch.cat([h, skips.pop()], dim=1), emb, context)
        return self.out(h)


def build_sgm_unet(layout: SgmLayout) -> SgmUNet:
    return SgmUNet(layout)


def sdxl_base_layout(model_channels: int = 320, context_dim: int = 2048, adm_in_channels: int = 2816,
                     depths: tuple[int, int, int] = (0, 2, 10)) -> SgmLayout:
    """sd_xl_base.yaml's network (channel_mult 1, 2, 4; 2 res blocks; attention at levels 1 and 2), at any width."""
    mults = (1, 2, 4)
    inputs, outputs = [], []
    skip_channels = [model_channels]
    ch = model_channels
    for level, mult in enumerate(mults):
        out = model_channels * mult
        for _ in range(2):
            inputs.append(BlockSpec(ch, out, depths[level] or None))
            ch = out
            skip_channels.append(ch)
        if level != len(mults) - 1:
            inputs.append(BlockSpec(ch, ch, down=True))
            skip_channels.append(ch)
    for level, mult in reversed(list(enumerate(mults))):
        out = model_channels * mult
        for i in range(3):
            outputs.append(BlockSpec(ch + skip_channels.pop(), out, depths[level] or None,
                                     upsample=bool(level) and i == 2))
            ch = out
    return SgmLayout(4, model_channels, 4, adm_in_channels, context_dim, True, tuple(inputs), depths[-1],
                     tuple(outputs))
