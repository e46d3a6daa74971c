"""The ControlNet network (Zhang et al. 2023) in the ldm key layout, built from a `ControlNetArch`.

State-dict keys: `time_embed.*`, optional `label_emb.0.*` (SDXL), `input_hint_block.*`, `input_blocks.*`,
`zero_convs.N.0.*`, `middle_block.*`, `middle_block_out.0.*` — the published checkpoints load key-for-key.
"""

from __future__ import annotations

import torch
from torch import nn

from .arch import ControlNetArch, DownSpec
from .ldm_blocks import Downsample, ResBlock, SpatialTransformer, TimestepSequential, timestep_embedding


class ControlNet(nn.Module):
    def __init__(self, arch: ControlNetArch):
        super().__init__()
        self.arch = arch
        mc, ted = arch.model_channels, arch.time_embed_dim
        context_dim = arch.context_dim or 1

        def attention(channels: int, depth: int, level: int) -> SpatialTransformer:
            heads = arch.heads_for(channels, level)
            return SpatialTransformer(channels, depth, context_dim, heads, arch.linear_projection)

        self.time_embed = nn.Sequential(nn.Linear(mc, ted), nn.SiLU(), nn.Linear(ted, ted))
        if arch.adm_in_channels is not None:
            self.label_emb = nn.Sequential(
                nn.Sequential(nn.Linear(arch.adm_in_channels, ted), nn.SiLU(), nn.Linear(ted, ted))
            )

        hint_layers: list[nn.Module] = []
        for i, conv in enumerate(arch.hint_convs):
            if i:
                hint_layers.append(nn.SiLU())
            hint_layers.append(
                nn.Conv2d(
                    conv.in_channels, conv.out_channels, conv.kernel, stride=conv.stride, padding=conv.kernel // 2
                )
            )
        self.input_hint_block = TimestepSequential(*hint_layers)

        self.input_blocks = nn.ModuleList([TimestepSequential(nn.Conv2d(arch.in_channels, mc, 3, padding=1))])
        self.zero_convs = nn.ModuleList([TimestepSequential(nn.Conv2d(mc, mc, 1))])
        channels = mc
        for spec in arch.input_blocks:
            if isinstance(spec, DownSpec):
                layers = [Downsample(spec.channels)]
            else:
                layers = [ResBlock(spec.in_channels, ted, spec.out_channels)]
                if spec.attention_depth is not None:
                    layers.append(attention(spec.out_channels, spec.attention_depth, spec.level))
                channels = spec.out_channels
            self.input_blocks.append(TimestepSequential(*layers))
            self.zero_convs.append(TimestepSequential(nn.Conv2d(channels, channels, 1)))

        top_level = arch.levels - 1
        self.middle_block = TimestepSequential(
            *[
                ResBlock(channels, ted, channels)
                if kind == "res"
                else attention(channels, arch.middle_attention_depth or 0, top_level)
                for kind in arch.middle
            ]
        )
        self.middle_block_out = TimestepSequential(nn.Conv2d(channels, channels, 1))

    @property
    def num_outputs(self) -> int:
        return len(self.zero_convs) + 1

    def encode_hint(self, hint: torch.Tensor) -> torch.Tensor:
        """The hint encoder's output; independent of the timestep, so callers may reuse it across steps."""
        return self.input_hint_block(hint)

    def forward(
        self,
        x: torch.Tensor,
        hint: torch.Tensor | None,
        timesteps: torch.Tensor,
        context: torch.Tensor | None,
        y: torch.Tensor | None = None,
        guided_hint: torch.Tensor | None = None,
        extra_emb: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Residuals for the UNet: one per input block (shallowest first), then the middle block's.

        `extra_emb` is added to the time embedding (a union model's control-type embedding)."""
        emb = self.time_embed(timestep_embedding(timesteps, self.arch.model_channels).to(x.dtype))
        if extra_emb is not None:
            emb = emb + extra_emb
        if self.arch.adm_in_channels is not None:
            if y is None:
                raise ValueError("this ControlNet is class-conditional (SDXL): y is required")
            emb = emb + self.label_emb(y)
        if guided_hint is None:
            guided_hint = self.encode_hint(hint)

        outs = []
        h = x
        for i, (block, zero_conv) in enumerate(zip(self.input_blocks, self.zero_convs)):
            h = block(h, emb, context)
            if i == 0:
                h = h + guided_hint
            outs.append(zero_conv(h, emb, context))
        h = self.middle_block(h, emb, context)
        outs.append(self.middle_block_out(h, emb, context))
        return outs
