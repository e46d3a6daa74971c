"""The shape of an ldm-layout ControlNet, read from its state dict's key names and tensor shapes alone.

Nothing here looks at a file name or trusts a config: channel counts, block order, transformer depths,
context width and projection type all come from the tensors, so SD1/SD2/SDXL (full, mid, small) and
any smaller test model are described the same way. Only the attention head split cannot be read from
shapes; it follows the family (see `heads_for`) unless a diffusers config states it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

Shapes = Mapping[str, tuple[int, ...]]


@dataclass(frozen=True)
class ResSpec:
    in_channels: int
    out_channels: int
    attention_depth: int | None  # None: no transformer after the ResBlock; 0: a transformer with no blocks
    level: int  # how many downsamples came before (selects per-level head counts)


@dataclass(frozen=True)
class DownSpec:
    channels: int
    level: int


@dataclass(frozen=True)
class HintConv:
    in_channels: int
    out_channels: int
    kernel: int
    stride: int


@dataclass(frozen=True)
class ControlNetArch:
    in_channels: int
    model_channels: int
    hint_convs: tuple[HintConv, ...]
    input_blocks: tuple[ResSpec | DownSpec, ...]  # after input_blocks.0 (the conv_in)
    middle: tuple[str, ...]  # "res" / "attn" entries of middle_block, in order
    middle_attention_depth: int | None
    context_dim: int | None
    linear_projection: bool
    adm_in_channels: int | None
    # head split: exactly one of these is set once the family is known
    num_heads: int | None = None
    head_dim: int | None = None
    heads_per_level: tuple[int, ...] | None = None

    @property
    def time_embed_dim(self) -> int:
        return self.model_channels * 4

    @property
    def hint_channels(self) -> int:
        return self.hint_convs[0].in_channels

    @property
    def num_outputs(self) -> int:
        """Residuals produced: one per input block (conv_in included) plus the middle block."""
        return len(self.input_blocks) + 2

    @property
    def levels(self) -> int:
        return 1 + sum(isinstance(b, DownSpec) for b in self.input_blocks)

    def heads_for(self, channels: int, level: int) -> int:
        if self.heads_per_level is not None:
            return self.heads_per_level[min(level, len(self.heads_per_level) - 1)]
        if self.num_heads is not None:
            return self.num_heads
        return max(1, channels // (self.head_dim or 64))


def _indices(shapes: Shapes, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in shapes if (m := rx.match(k))})


def _depth(shapes: Shapes, prefix: str) -> int | None:
    """Transformer depth at `prefix` (e.g. 'input_blocks.4.1'), None when there is no transformer there."""
    if f"{prefix}.norm.weight" not in shapes:
        return None
    return len(_indices(shapes, re.escape(prefix) + r"\.transformer_blocks\.(\d+)\."))


def arch_from_shapes(shapes: Shapes) -> ControlNetArch:
    """Describe a ControlNet from ldm key names (no `control_model.` prefix) and their shapes."""
    conv_in = shapes["input_blocks.0.0.weight"]
    model_channels, in_channels = conv_in[0], conv_in[1]

    hint_idx = _indices(shapes, r"input_hint_block\.(\d+)\.weight$")
    hint_convs = []
    for pos, idx in enumerate(hint_idx):
        out_c, in_c, k, _ = shapes[f"input_hint_block.{idx}.weight"]
        # ldm layout: conv_in, then pairs (same-width conv, stride-2 widening conv), then the zero conv_out.
        stride = 2 if 0 < pos < len(hint_idx) - 1 and pos % 2 == 0 else 1
        hint_convs.append(HintConv(in_c, out_c, k, stride))

    blocks: list[ResSpec | DownSpec] = []
    channels, level = model_channels, 0
    for n in _indices(shapes, r"input_blocks\.(\d+)\.")[1:]:
        if f"input_blocks.{n}.0.op.weight" in shapes:
            blocks.append(DownSpec(channels, level))
            level += 1
        else:
            out_c = shapes[f"input_blocks.{n}.0.out_layers.3.weight"][0]
            blocks.append(ResSpec(channels, out_c, _depth(shapes, f"input_blocks.{n}.1"), level))
            channels = out_c

    middle = tuple(
        "attn" if f"middle_block.{i}.norm.weight" in shapes else "res"
        for i in _indices(shapes, r"middle_block\.(\d+)\.")
    )
    middle_depth = next(
        (_depth(shapes, f"middle_block.{i}") for i, kind in enumerate(middle) if kind == "attn"), None
    )

    to_k = next((v for k, v in shapes.items() if k.endswith("attn2.to_k.weight")), None)
    proj_in = next((v for k, v in shapes.items() if k.endswith(".proj_in.weight")), None)
    adm = shapes.get("label_emb.0.0.weight")
    return ControlNetArch(
        in_channels=in_channels,
        model_channels=model_channels,
        hint_convs=tuple(hint_convs),
        input_blocks=tuple(blocks),
        middle=middle,
        middle_attention_depth=middle_depth,
        context_dim=to_k[1] if to_k is not None else None,
        linear_projection=proj_in is not None and len(proj_in) == 2,
        adm_in_channels=adm[1] if adm is not None else None,
    )
