"""EVA02-CLIP-L-14-336's vision tower: what PuLID reads of the face-features image.

The reference runs it through the separate sd-webui-controlnet-evaclip extension (BAAI's eva_clip code,
`create_model_and_transforms("EVA02-CLIP-L-14-336", "eva_clip")`); here it is written in plain torch, in the
key layout of the published checkpoint QuanSun/EVA-CLIP `EVA02_CLIP_L_336_psz14_s6B.pt` (the whole CLIP model;
its `visual.*` tensors are the tower, the text tower and `logit_scale` are not read). The file is read with
`torch.load(weights_only=True)` (or as `.safetensors`), never unpickled with code.

The published configuration (model_configs/EVA02-CLIP-L-14-336.json): 336 x 336 input, 14 x 14 patches (a 24 x
24 grid and a class token: 577 tokens), width 1024, 24 blocks of 16 heads of 64, an output of 768. Each block:

- pre-norm (LayerNorm, eps 1e-6) attention with separate q/k/v projections (`subln`), biases on q and v only,
  2-D rotary position embedding on the patch tokens' queries and keys (not the class token's): per head, the
  first 32 channels rotate by the patch's row, the last 32 by its column, in interleaved pairs, at frequencies
  1 / 10000^(2i/32) of the position scaled from the 24-grid to the 16-grid it was pretrained on (`intp_freq`);
  a LayerNorm on the attention output before the output projection (`inner_attn_ln`);
- pre-norm SwiGLU: w3(LayerNorm(silu(w1 x) * w2 x)), hidden width int(1024 * 2.6667) = 2730.

After the blocks: LayerNorm, the class token, `head` (1024 -> 768). No mean pooling, no layer scale, no
patch dropout, no drop path at inference.

PuLID (ToTheBeginning/PuLID pipeline.py, the reference's preprocessor) takes from it, for one face-features
image (RGB in [0, 1], resized bicubically to 336 x 336 as torchvision's tensor `resize` did in the versions both
ran, i.e. without antialiasing, then normalised with OpenAI's CLIP mean and std):

- `id_cond_vit`: the head's output divided by its L2 norm, [1, 768];
- `id_vit_hidden`: the token states entering blocks 4, 8, 12, 16 and 20, [1, 577, 1024] each (what
  `return_hidden=True` collects).
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from .weights import NetSpec, WeightFile

EVA_CLIP_FILE = "EVA02_CLIP_L_336_psz14_s6B.pt"
EVA_CLIP_URL = f"https://huggingface.co/QuanSun/EVA-CLIP/blob/main/{EVA_CLIP_FILE}"
MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI's CLIP statistics (eva_clip.constants)
STD = (0.26862954, 0.26130258, 0.27577711)
HEAD_WIDTH = 64
EPS = 1e-6
PRETRAINED_GRID = 16  # pt_hw_seq_len: the rotary frequencies are those of a 16 x 16 grid (224 / 14)
ROPE_THETA = 10000.0
HIDDEN_EVERY, HIDDEN_LAST = 4, 20  # states entering blocks 4, 8, ..., 20
# the published tower (vision_cfg of EVA02-CLIP-L-14-336 and embed_dim)
PUBLISHED = dict(image_size=336, patch=14, width=1024, depth=24, mlp=2730, out=768)


def rope_tables(grid: int, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) [grid * grid, head_dim] for the patch tokens in row-major order: the first half of each head
    turns with the row, the second with the column, each frequency used by a pair of adjacent channels."""
    half = head_dim // 2
    freqs = 1.0 / ROPE_THETA ** (torch.arange(0, half, 2)[: half // 2].float() / half)
    positions = torch.arange(grid).float() / grid * PRETRAINED_GRID
    angles = torch.repeat_interleave(torch.outer(positions, freqs), 2, dim=-1)  # [grid, half]
    rows = angles[:, None, :].expand(grid, grid, half)
    cols = angles[None, :, :].expand(grid, grid, half)
    table = torch.cat([rows, cols], dim=-1).reshape(grid * grid, head_dim)
    return table.cos(), table.sin()


def rotate_pairs(t: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)."""
    pairs = t.unflatten(-1, (-1, 2))
    return torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)


class Attention(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.heads = width // HEAD_WIDTH
        self.q_proj = nn.Linear(width, width, bias=False)
        self.k_proj = nn.Linear(width, width, bias=False)
        self.v_proj = nn.Linear(width, width, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.inner_attn_ln = nn.LayerNorm(width, eps=EPS)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape

        def heads(t):
            return t.view(b, n, self.heads, -1).transpose(1, 2)

        q = heads(F.linear(x, self.q_proj.weight, self.q_bias))
        k = heads(self.k_proj(x))
        v = heads(F.linear(x, self.v_proj.weight, self.v_bias))

        def rope(t):  # the class token (position 0) is not rotated
            patches = t[:, :, 1:]
            return torch.cat([t[:, :, :1], patches * cos + rotate_pairs(patches) * sin], dim=2)

        out = F.scaled_dot_product_attention(rope(q), rope(k), v)  # scale 1 / sqrt(64)
        return self.proj(self.inner_attn_ln(out.transpose(1, 2).reshape(b, n, c)))


class SwiGLU(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(width, hidden)
        self.w2 = nn.Linear(width, hidden)
        self.ffn_ln = nn.LayerNorm(hidden, eps=EPS)
        self.w3 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(self.ffn_ln(F.silu(self.w1(x)) * self.w2(x)))


class Block(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=EPS)
        self.attn = Attention(width)
        self.norm2 = nn.LayerNorm(width, eps=EPS)
        self.mlp = SwiGLU(width, hidden)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, width: int):
        super().__init__()
        self.proj = nn.Conv2d(3, width, patch, patch)


class EvaVisionTower(nn.Module):
    """pixels [B, 3, S, S] (normalised) -> (head output [B, out], the hidden states PuLID reads)."""

    def __init__(self, *, image_size: int, patch: int, width: int, depth: int, mlp: int, out: int):
        super().__init__()
        if width % HEAD_WIDTH or image_size % patch:
            raise ValueError(f"width {width} / image size {image_size} do not fit 64-wide heads / {patch}px patches")
        self.image_size, self.grid = image_size, image_size // patch
        self.patch_embed = PatchEmbed(patch, width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid**2 + 1, width))
        self.blocks = nn.ModuleList(Block(width, mlp) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=EPS)
        self.head = nn.Linear(width, out)
        cos, sin = rope_tables(self.grid, HEAD_WIDTH)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.patch_embed.proj(pixels).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        cos, sin = self.rope_cos.to(x.dtype), self.rope_sin.to(x.dtype)
        hidden = []
        for index, block in enumerate(self.blocks):
            if 0 < index <= HIDDEN_LAST and index % HIDDEN_EVERY == 0:
                hidden.append(x)
            x = block(x, cos, sin)
        return self.head(self.norm(x)[:, 0]), hidden


def config_from_state(state) -> dict:
    width, _, patch, _ = state["patch_embed.proj.weight"].shape
    tokens = state["pos_embed"].shape[1]
    grid = math.isqrt(tokens - 1)
    if grid * grid != tokens - 1:
        raise ValueError(f"pos_embed has {tokens} positions, not a square grid plus the class token")
    depth = len({m.group(1) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    return dict(image_size=grid * patch, patch=patch, width=width, depth=depth,
                mlp=state["blocks.0.mlp.w1.weight"].shape[0], out=state["head.weight"].shape[0])


def build(state) -> EvaVisionTower:
    return EvaVisionTower(**(PUBLISHED if state is None else config_from_state(state)))


def visual_tensors(state):
    """The tower's tensors of a whole EVA-CLIP file (`visual.*`, prefix dropped), or of a tower saved alone."""
    if any(k.startswith("visual.") for k in state):
        return {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


# The rotary tables are buffers of the upstream modules (so in the file); the reference drops them when it
# loads and recomputes them, as this tower does.
EVA_CLIP = NetSpec("EVA02-CLIP-L-14-336 vision tower",
                   WeightFile((EVA_CLIP_FILE,), "clip_vision", urls={EVA_CLIP_FILE: EVA_CLIP_URL}),
                   build, adapt=visual_tensors, ignore=("rope.freqs_cos", "rope.freqs_sin", "blocks.*.attn.rope.*"))


def eva_input(face_features: torch.Tensor, size: int) -> torch.Tensor:
    """[B, 3, H, W] RGB in [0, 1] -> the tower's input: bicubic to size x size (no antialiasing, as
    torchvision <= 0.16 resized tensors), OpenAI's mean and std."""
    x = F.interpolate(face_features.float(), size=(size, size), mode="bicubic", align_corners=False)
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def eva_features(net: EvaVisionTower, face_features: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(id_cond_vit: the L2-normalised head output [B, out], id_vit_hidden: the hidden states) of face-features
    images, as the reference's EVA02-CLIP-L-14-336 preprocessor returns them."""
    embeds, hidden = net(eva_input(face_features, net.image_size))
    return embeds / torch.norm(embeds, 2, 1, True), hidden
