"""ControlNet Union / ProMax (xinsir): one SDXL ControlNet for several control types, several hints at once.

On top of the ldm ControlNet (`controlnet.ControlNet`, same keys) it has a task-fusion head, as diffusers'
`ControlNetUnionModel` computes it:

- `control_add_embedding`: the control-type one-hot over the N task slots (6 Union, 8 ProMax), each 0/1
  value sinusoidally embedded (D wide), concatenated, then Linear-SiLU-Linear; added to the time embedding;
- per hint i: `c_i = input_hint_block(hint_i)`; token `f_i = mean_HW(c_i) + task_embedding[type_i]`;
  the tokens go through `transformer_layes` and `alpha_i = spatial_ch_projs(token_i)`;
- one hint: `guided = c + alpha`, the caller scales the residuals by its weight;
  k hints (diffusers' multi-condition path): the tokens are `s_i·f_i` and `guided = Σ s_i·(c_i + alpha_i)`,
  the residuals are not scaled again;
- `h = input_blocks[0](x) + guided`, then the ControlNet as usual.

The transformer is CLIP's residual attention block applied as xinsir's code (and diffusers) apply it:
nn.MultiheadAttention is sequence-first and is handed [rows, tokens, C], so each token attends across the
batch rows, never to the other tokens. Kept as trained. Two consequences: tokens are independent (diffusers'
extra token for the latent, whose output nothing reads, changes nothing and is not computed here), and a
hint shared by every row (one control image) attends to copies of itself, so rows do not mix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .arch import ControlNetArch
from .controlnet import ControlNet
from .ldm_blocks import timestep_embedding

Shapes = Mapping[str, tuple[int, ...]]
DEFAULT_HEADS = 8  # diffusers' num_trans_head default and xinsir's published configs; not readable from shapes


@dataclass(frozen=True)
class UnionSpec:
    num_control_type: int  # task slots: 6 (Union) or 8 (ProMax)
    type_embed_dim: int  # sinusoidal width per slot (256 published)
    channels: int  # token width (320 published: the ControlNet's model_channels)
    proj_channels: int
    heads: int
    layers: int

    @classmethod
    def from_shapes(cls, shapes: Shapes, heads: int | None = None) -> UnionSpec:
        slots, channels = shapes["task_embedding"]
        layers = len({k.split(".")[1] for k in shapes if k.startswith("transformer_layes.")})
        return cls(
            num_control_type=slots,
            type_embed_dim=shapes["control_add_embedding.linear_1.weight"][1] // slots,
            channels=channels,
            proj_channels=shapes["spatial_ch_projs.weight"][0],
            heads=heads or DEFAULT_HEADS,
            layers=layers,
        )


class RowAttention(nn.Module):
    """nn.MultiheadAttention's parameters (`in_proj_weight`, `in_proj_bias`, `out_proj`), attending across
    dim 1 of [tokens, rows, C]: each token over the batch rows (see the module docstring)."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.heads = heads
        # zeros, not empty: files fill these, but a network built off the meta device (tests) would keep
        # whatever the freed memory held, NaN included
        self.in_proj_weight = nn.Parameter(torch.zeros(3 * channels, channels))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * channels))
        self.out_proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, r, c = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)

        def split(z):  # [T, R, C] -> [T, H, R, C/H]
            return z.reshape(t, r, self.heads, c // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(q), split(k), split(v))
        return self.out_proj(out.transpose(1, 2).reshape(t, r, c))


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class TaskMlp(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.c_fc = nn.Linear(channels, channels * 4)
        self.gelu = QuickGELU()
        self.c_proj = nn.Linear(channels * 4, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class TaskBlock(nn.Module):
    """CLIP's ResidualAttentionBlock (`attn`, `ln_1`, `mlp.c_fc`, `mlp.c_proj`, `ln_2`)."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.attn = RowAttention(channels, heads)
        self.ln_1 = nn.LayerNorm(channels)
        self.mlp = TaskMlp(channels)
        self.ln_2 = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TypeEmbedding(nn.Module):
    """diffusers' TimestepEmbedding over the embedded one-hot (`linear_1`, SiLU, `linear_2`)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, out_dim)
        self.linear_2 = nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class ControlNetUnion(ControlNet):
    def __init__(self, arch: ControlNetArch, spec: UnionSpec):
        super().__init__(arch)
        if spec.channels != arch.model_channels or spec.proj_channels != arch.model_channels:
            raise ValueError(f"union head width {spec.channels}/{spec.proj_channels} does not match the "
                             f"ControlNet's {arch.model_channels} channels")
        if spec.channels % spec.heads:
            raise ValueError(f"union head width {spec.channels} does not split into {spec.heads} heads")
        self.spec = spec
        self.task_embedding = nn.Parameter(torch.zeros(spec.num_control_type, spec.channels))
        self.transformer_layes = nn.ModuleList(TaskBlock(spec.channels, spec.heads) for _ in range(spec.layers))
        self.spatial_ch_projs = nn.Linear(spec.channels, spec.proj_channels)
        self.control_add_embedding = TypeEmbedding(spec.type_embed_dim * spec.num_control_type,
                                                   arch.time_embed_dim)

    def type_embedding(self, control_types: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        """[1, time_embed_dim]: the embedded one-hot of the types in use (none: all slots 0)."""
        one_hot = torch.zeros(self.spec.num_control_type, device=self.task_embedding.device)
        if len(control_types):
            one_hot[list(control_types)] = 1.0
        embedded = timestep_embedding(one_hot, self.spec.type_embed_dim).reshape(1, -1)
        return self.control_add_embedding(embedded.to(dtype))

    def fuse(self, conditions: Sequence[torch.Tensor], control_types: Sequence[int],
             scales: Sequence[float] | None = None, rows: int | None = None) -> torch.Tensor:
        """The guided hint from encoded hints `c_i` ([1 or rows, C, H, W], `encode_hint`'s output).

        One hint: c + alpha (`scales` unused: the caller scales the residuals). Several: Σ s_i·(c_i + alpha_i)
        with the tokens scaled by s_i, as diffusers' multi-condition path. No type (the reference's "Unknown"):
        the encoded hint alone.
        """
        if not control_types:
            if len(conditions) != 1:
                raise ValueError("several hints need one control type each")
            return conditions[0]
        if len(control_types) != len(conditions):
            raise ValueError(f"{len(conditions)} hints but {len(control_types)} control types")
        multi = len(conditions) > 1
        scales = [1.0] * len(conditions) if scales is None or not multi else [float(s) for s in scales]
        rows = rows or max(c.shape[0] for c in conditions)
        tokens = []
        for c, slot, s in zip(conditions, control_types, scales):
            token = c.mean(dim=(2, 3)) + self.task_embedding[slot]
            tokens.append((token * s if multi else token).expand(rows, -1))
        x = torch.stack(tokens)  # [k, rows, C]: each token attends across the rows (see the module docstring)
        for block in self.transformer_layes:
            x = block(x)
        alphas = self.spatial_ch_projs(x)[..., None, None]  # [k, rows, C, 1, 1]
        guided = None
        for c, alpha, s in zip(conditions, alphas, scales):
            term = c + alpha if not multi else c * s + alpha * s
            guided = term if guided is None else guided + term
        return guided

    def forward(self, x, hint, timesteps, context, y=None, guided_hint=None, control_types: Sequence[int] = (),
                type_embedding: torch.Tensor | None = None):
        """`guided_hint` from `fuse` (or one hint, fused here); `control_types` or a precomputed `type_embedding`."""
        if type_embedding is None:
            type_embedding = self.type_embedding(control_types, x.dtype)
        if guided_hint is None:
            guided_hint = self.fuse([self.encode_hint(hint)], control_types, rows=x.shape[0])
        return super().forward(x, None, timesteps, context, y, guided_hint=guided_hint, extra_emb=type_embedding)
