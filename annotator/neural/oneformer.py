"""seg_ofade20k and seg_ofcoco: OneFormer with a Swin-L backbone (250_16_swin_l_oneformer_ade20k_160k.pth,
150_16_swin_l_oneformer_coco_100ep.pth), in plain torch in the layout of the published detectron2 checkpoints,
run for its "semantic" task.

- Backbone: Swin-L (patch 4, window 12, shifted windows; 192, 384, 768, 1536 channels at strides 4 to 32).
- Pixel decoder: multi-scale deformable attention (6 encoder layers over the stride 8, 16, 32 features, 3
  levels, 4 points, 8 heads; sampled with grid_sample, as the reference's PyTorch path does) and an FPN step to
  stride 4, whose 1x1 projection gives the per-pixel mask features.
- Task-conditioned transformer decoder: the task text "The task is semantic" (CLIP BPE ids, fixed) through a
  2-layer MLP gives the task token; a 2-layer DETR decoder turns it and the queries into the initial queries;
  9 masked-attention layers (cross-attention to one scale at a time, self-attention, FFN) refine them; each
  query has class logits (+1 "no object") and a mask (its embedding dotted with the mask features).
- Semantic inference: masks upsampled to the input, cut to the image, resized to it; per class the sum over
  queries of P(class) x sigmoid(mask); the argmax, in the dataset's colours (ADE20K or COCO panoptic).

Preprocessing as the reference's DefaultPredictor: RGB, resized (PIL bilinear) so the short side is 640
(ADE20K; long side <= 2560) or 800 (COCO; <= 1333), normalised, zero-padded to a multiple of 32. The reference
draws the classes with detectron2's matplotlib Visualizer (each region a polygon with a thin off-white edge);
we fill each pixel with its class colour, with no edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..util import hwc3, resize_short_side
from .runtime import AnnotatorModels, default_models
from .seg_palettes import ADE20K, COCO_PANOPTIC
from .uniformer import pad_to
from .weights import NetSpec, WeightFile

# CLIP BPE of "the task is semantic" between <|startoftext|> and <|endoftext|>, zero-padded to 77 (OneFormer's
# task tokenizer; tests check the ids against the CLIP vocabulary file where one is installed).
TASK_TOKENS = (49406, 518, 10549, 533, 29119, 1550, 49407)
TASK_LENGTH = 77
MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
SIZE_DIVISIBILITY = 32


@dataclass(frozen=True)
class Config:
    embed_dim: int = 192
    depths: tuple[int, ...] = (2, 2, 18, 2)
    heads: tuple[int, ...] = (6, 12, 24, 48)
    window: int = 12
    dim: int = 256  # pixel decoder, mask and query width
    enc_layers: int = 6
    enc_ffn: int = 1024
    enc_points: int = 4
    nheads: int = 8
    dec_layers: int = 9
    class_dec_layers: int = 2
    ffn: int = 2048
    queries: int = 250
    classes: int = 150
    groups: int = 32  # GroupNorm


ADE20K_CONFIG = Config()
COCO_CONFIG = Config(queries=150, classes=133)


# --- Swin ---------------------------------------------------------------------------------------------------
def _windows(x: torch.Tensor, size: int) -> torch.Tensor:
    b, h, w, c = x.shape
    return x.view(b, h // size, size, w // size, size, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, size * size, c)


def _unwindows(x: torch.Tensor, size: int, h: int, w: int) -> torch.Tensor:
    b = x.shape[0] // ((h // size) * (w // size))
    return x.view(b, h // size, w // size, size, size, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, heads: int):
        super().__init__()
        self.heads = heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("relative_position_index", relative[:, :, 0] * (2 * window - 1) + relative[:, :, 1])
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        bias = bias.permute(2, 0, 1)[None]
        if mask is not None:  # windows x n x n, -100 between regions that the shift brought together
            bias = (bias + mask[:, None]).repeat(b // mask.shape[0], 1, 1, 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, shift: int):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(dim, dim * 4)
        self.mlp.fc2 = nn.Linear(dim * 4, dim)

    def forward(self, x, h: int, w: int, mask):
        b, _, c = x.shape
        s = self.window
        y = F.pad(self.norm1(x).view(b, h, w, c), (0, 0, 0, -w % s, 0, -h % s))
        hp, wp = y.shape[1:3]
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), dims=(1, 2))
        y = _unwindows(self.attn(_windows(y, s), mask if self.shift else None), s, hp, wp)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), dims=(1, 2))
        x = x + y[:, :h, :w].reshape(b, h * w, c)
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))


class PatchMerging(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x, h: int, w: int):
        b, _, c = x.shape
        x = F.pad(x.view(b, h, w, c), (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


def shift_mask(h: int, w: int, window: int, device) -> torch.Tensor:
    """Swin's attention mask for shifted windows over the padded h x w grid."""
    shift = window // 2
    hp, wp = -(-h // window) * window, -(-w // window) * window
    regions = torch.zeros(1, hp, wp, 1, device=device)
    count = 0
    for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            regions[:, hs, ws, :] = count
            count += 1
    windows = _windows(regions, window)[..., 0]
    mask = windows[:, None, :] - windows[:, :, None]
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


class Swin(nn.Module):
    """Normalised RGB -> features at strides 4, 8, 16, 32 (each through its own LayerNorm)."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.window = cfg.window
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, cfg.embed_dim, 4, stride=4)
        self.patch_embed.norm = nn.LayerNorm(cfg.embed_dim)
        self.layers = nn.ModuleList()
        self.dims = [cfg.embed_dim * 2 ** i for i in range(len(cfg.depths))]
        for i, (dim, depth, heads) in enumerate(zip(self.dims, cfg.depths, cfg.heads)):
            layer = nn.Module()
            layer.blocks = nn.ModuleList(SwinBlock(dim, heads, cfg.window, 0 if j % 2 == 0 else cfg.window // 2)
                                         for j in range(depth))
            if i < len(cfg.depths) - 1:
                layer.downsample = PatchMerging(dim)
            self.layers.append(layer)
        for i, dim in enumerate(self.dims):
            self.add_module(f"norm{i}", nn.LayerNorm(dim))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.pad(x, (0, -x.shape[3] % 4, 0, -x.shape[2] % 4))
        x = self.patch_embed.proj(x)
        h, w = x.shape[2:]
        x = self.patch_embed.norm(x.flatten(2).transpose(1, 2))
        outs = []
        for i, layer in enumerate(self.layers):
            mask = shift_mask(h, w, self.window, x.device)
            for block in layer.blocks:
                x = block(x, h, w, mask)
            outs.append(getattr(self, f"norm{i}")(x).view(-1, h, w, self.dims[i]).permute(0, 3, 1, 2))
            if hasattr(layer, "downsample"):
                x = layer.downsample(x, h, w)
                h, w = (h + 1) // 2, (w + 1) // 2
        return outs


# --- pixel decoder ------------------------------------------------------------------------------------------
def sine_position(x: torch.Tensor, features: int) -> torch.Tensor:
    """DETR's normalised sine embedding of an N x C x H x W map's grid: N x 2*features x H x W (y then x)."""
    n, _, h, w = x.shape
    ones = torch.ones(n, h, w, dtype=torch.float32, device=x.device)
    y_embed, x_embed = ones.cumsum(1), ones.cumsum(2)
    y_embed = y_embed / (y_embed[:, -1:, :] + 1e-6) * 2 * np.pi
    x_embed = x_embed / (x_embed[:, :, -1:] + 1e-6) * 2 * np.pi
    dim_t = torch.arange(features, dtype=torch.float32, device=x.device)
    dim_t = 10000 ** (2 * (dim_t // 2) / features)

    def encode(embed):
        pos = embed[..., None] / dim_t
        return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=4).flatten(3)

    return torch.cat((encode(y_embed), encode(x_embed)), dim=3).permute(0, 3, 1, 2).to(x.dtype)


class MSDeformAttn(nn.Module):
    def __init__(self, dim: int, levels: int, heads: int, points: int):
        super().__init__()
        self.levels, self.heads, self.points = levels, heads, points
        self.sampling_offsets = nn.Linear(dim, heads * levels * points * 2)
        self.attention_weights = nn.Linear(dim, heads * levels * points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)

    def forward(self, query, reference, value_in, shapes: list[tuple[int, int]]):
        n, q_len, c = query.shape
        value = self.value_proj(value_in).view(n, -1, self.heads, c // self.heads)
        offsets = self.sampling_offsets(query).view(n, q_len, self.heads, self.levels, self.points, 2)
        weights = F.softmax(self.attention_weights(query).view(n, q_len, self.heads, -1), -1)
        weights = weights.view(n, q_len, self.heads, self.levels, self.points)
        normaliser = torch.tensor([(w, h) for h, w in shapes], dtype=query.dtype, device=query.device)
        locations = reference[:, :, None, :, None, :] + offsets / normaliser[None, None, None, :, None, :]
        grids = 2 * locations - 1
        sampled = []
        for level, (h, w) in enumerate(shapes):
            start = sum(a * b for a, b in shapes[:level])
            v = value[:, start:start + h * w].flatten(2).transpose(1, 2).reshape(n * self.heads, -1, h, w)
            grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
            sampled.append(F.grid_sample(v, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
        weights = weights.transpose(1, 2).reshape(n * self.heads, 1, q_len, -1)
        out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1).view(n, -1, q_len)
        return self.output_proj(out.transpose(1, 2))


class DeformableEncoderLayer(nn.Module):
    def __init__(self, cfg: Config, levels: int):
        super().__init__()
        self.self_attn = MSDeformAttn(cfg.dim, levels, cfg.nheads, cfg.enc_points)
        self.norm1 = nn.LayerNorm(cfg.dim)
        self.linear1 = nn.Linear(cfg.dim, cfg.enc_ffn)
        self.linear2 = nn.Linear(cfg.enc_ffn, cfg.dim)
        self.norm2 = nn.LayerNorm(cfg.dim)

    def forward(self, src, pos, reference, shapes):
        src = self.norm1(src + self.self_attn(src + pos, reference, src, shapes))
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class ConvNorm(nn.Conv2d):
    """detectron2's Conv2d with a GroupNorm (and no bias)."""

    def __init__(self, cin: int, cout: int, kernel: int, groups: int, relu: bool):
        super().__init__(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.norm = nn.GroupNorm(groups, cout)
        self.relu = relu

    def forward(self, x):
        x = self.norm(super().forward(x))
        return F.relu(x) if self.relu else x


class PixelDecoder(nn.Module):
    def __init__(self, cfg: Config, channels: list[int]):
        super().__init__()
        self.dim = cfg.dim
        self.input_proj = nn.ModuleList(nn.Sequential(nn.Conv2d(c, cfg.dim, 1), nn.GroupNorm(cfg.groups, cfg.dim))
                                        for c in reversed(channels[1:]))
        self.transformer = nn.Module()
        self.transformer.level_embed = nn.Parameter(torch.zeros(3, cfg.dim))
        self.transformer.encoder = nn.Module()
        self.transformer.encoder.layers = nn.ModuleList(DeformableEncoderLayer(cfg, 3) for _ in range(cfg.enc_layers))
        self.mask_features = nn.Conv2d(cfg.dim, cfg.dim, 1)
        self.adapter_1 = ConvNorm(channels[0], cfg.dim, 1, cfg.groups, relu=False)
        self.layer_1 = ConvNorm(cfg.dim, cfg.dim, 3, cfg.groups, relu=True)

    def forward(self, features: list[torch.Tensor]):
        """(mask features at stride 4, [the three scales the decoder attends to: strides 32, 16, 8])."""
        levels = features[1:][::-1]  # strides 32, 16, 8
        srcs = [proj(f) for proj, f in zip(self.input_proj, levels)]
        shapes = [tuple(s.shape[2:]) for s in srcs]
        src = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        pos = torch.cat([(sine_position(s, self.dim // 2).flatten(2).transpose(1, 2) + self.transformer.level_embed[i])
                         for i, s in enumerate(srcs)], 1)
        reference = torch.cat([torch.stack(torch.meshgrid(
            (torch.arange(h, dtype=src.dtype, device=src.device) + 0.5) / h,
            (torch.arange(w, dtype=src.dtype, device=src.device) + 0.5) / w, indexing="ij")[::-1], -1).reshape(-1, 2)
            for h, w in shapes])[None, :, None].expand(src.shape[0], -1, len(shapes), -1)
        for layer in self.transformer.encoder.layers:
            src = layer(src, pos, reference, shapes)
        out, start = [], 0
        for h, w in shapes:
            out.append(src[:, start:start + h * w].transpose(1, 2).reshape(src.shape[0], -1, h, w))
            start += h * w
        fine = self.adapter_1(features[0])
        fine = self.layer_1(fine + F.interpolate(out[-1], size=fine.shape[2:], mode="bilinear", align_corners=False))
        return self.mask_features(fine), out[:3]


# --- the task-conditioned decoder -------------------------------------------------------------------------------
class DetrDecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads)
        self.multihead_attn = nn.MultiheadAttention(dim, heads)
        self.linear1 = nn.Linear(dim, ffn)
        self.linear2 = nn.Linear(ffn, dim)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, tgt, memory, pos, query_pos):
        q = tgt + query_pos
        tgt = self.norm1(tgt + self.self_attn(q, q, tgt, need_weights=False)[0])
        tgt = self.norm2(tgt + self.multihead_attn(tgt + query_pos, memory + pos, memory, need_weights=False)[0])
        return self.norm3(tgt + self.linear2(F.relu(self.linear1(tgt))))


class ClassTransformer(nn.Module):
    """OneFormer's class_transformer: a DETR transformer with no encoder layers; its decoder starts from the
    task token. As OneFormer calls it, the "source" is the mask features' position code and the "position"
    their projection."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.decoder = nn.Module()
        self.decoder.layers = nn.ModuleList(DetrDecoderLayer(cfg.dim, cfg.nheads, cfg.ffn)
                                            for _ in range(cfg.class_dec_layers))
        self.decoder.norm = nn.LayerNorm(cfg.dim)

    def forward(self, src, query_embed, pos_embed, task_token):
        memory = src.flatten(2).permute(2, 0, 1)
        pos = pos_embed.flatten(2).permute(2, 0, 1)
        query_pos = query_embed[:, None].repeat(1, src.shape[0], 1)
        tgt = task_token.repeat(query_pos.shape[0], 1, 1)
        for layer in self.decoder.layers:
            tgt = layer(tgt, memory, pos, query_pos)
        return self.decoder.norm(tgt)  # queries x N x C


class AttentionLayer(nn.Module):
    def __init__(self, dim: int, heads: int, cross: bool):
        super().__init__()
        self.cross = cross
        attention = nn.MultiheadAttention(dim, heads)
        if cross:
            self.multihead_attn = attention
        else:
            self.self_attn = attention
        self.norm = nn.LayerNorm(dim)

    def forward(self, tgt, query_pos, memory=None, pos=None, mask=None):
        if self.cross:
            out = self.multihead_attn(tgt + query_pos, memory + pos, memory, attn_mask=mask, need_weights=False)[0]
        else:
            q = tgt + query_pos
            out = self.self_attn(q, q, tgt, need_weights=False)[0]
        return self.norm(tgt + out)


class FFNLayer(nn.Module):
    def __init__(self, dim: int, ffn: int):
        super().__init__()
        self.linear1 = nn.Linear(dim, ffn)
        self.linear2 = nn.Linear(ffn, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        return self.norm(x + self.linear2(F.relu(self.linear1(x))))


class MLP(nn.Module):
    def __init__(self, sizes: list[int]):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


class Predictor(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.class_transformer = ClassTransformer(cfg)
        self.transformer_self_attention_layers = nn.ModuleList(
            AttentionLayer(cfg.dim, cfg.nheads, cross=False) for _ in range(cfg.dec_layers))
        self.transformer_cross_attention_layers = nn.ModuleList(
            AttentionLayer(cfg.dim, cfg.nheads, cross=True) for _ in range(cfg.dec_layers))
        self.transformer_ffn_layers = nn.ModuleList(FFNLayer(cfg.dim, cfg.ffn) for _ in range(cfg.dec_layers))
        self.decoder_norm = nn.LayerNorm(cfg.dim)
        self.query_embed = nn.Embedding(cfg.queries, cfg.dim)
        self.level_embed = nn.Embedding(3, cfg.dim)
        self.class_input_proj = nn.Conv2d(cfg.dim, cfg.dim, 1)
        self.class_embed = nn.Linear(cfg.dim, cfg.classes + 1)
        self.mask_embed = MLP([cfg.dim] * 4)

    def heads(self, output, mask_features, target_size):
        decoded = self.decoder_norm(output).transpose(0, 1)
        classes = self.class_embed(decoded)
        masks = torch.einsum("bqc,bchw->bqhw", self.mask_embed(decoded), mask_features)
        attn = F.interpolate(masks, size=target_size, mode="bilinear", align_corners=False)
        attn = attn.sigmoid().flatten(2).unsqueeze(1).repeat(1, self.cfg.nheads, 1, 1).flatten(0, 1) < 0.5
        return classes, masks, attn

    def forward(self, scales: list[torch.Tensor], mask_features: torch.Tensor, task: torch.Tensor):
        """(N x Q x classes+1 logits, N x Q x H/4 x W/4 mask logits) after the last layer."""
        srcs, pos = [], []
        for i, x in enumerate(scales):
            pos.append(sine_position(x, self.cfg.dim // 2).flatten(2).permute(2, 0, 1))
            srcs.append((x.flatten(2) + self.level_embed.weight[i][None, :, None]).permute(2, 0, 1))
        n = srcs[0].shape[1]
        query_pos = self.query_embed.weight[:, None].repeat(1, n, 1)
        task = self.decoder_norm(task[None])  # 1 x N x C
        queries = self.class_transformer(sine_position(mask_features, self.cfg.dim // 2),
                                         self.query_embed.weight[:-1], self.class_input_proj(mask_features), task)
        output = torch.cat([queries, task], dim=0)
        classes, masks, attn = self.heads(output, mask_features, scales[0].shape[2:])
        for i in range(self.cfg.dec_layers):
            level = i % 3
            attn[attn.sum(-1) == attn.shape[-1]] = False  # a query masked everywhere attends everywhere
            output = self.transformer_cross_attention_layers[i](output, query_pos, srcs[level], pos[level], attn)
            output = self.transformer_self_attention_layers[i](output, query_pos)
            output = self.transformer_ffn_layers[i](output)
            classes, masks, attn = self.heads(output, mask_features, scales[(i + 1) % 3].shape[2:])
        return classes, masks


class OneFormer(nn.Module):
    def __init__(self, cfg: Config = ADE20K_CONFIG):
        super().__init__()
        self.cfg = cfg
        self.backbone = Swin(cfg)
        self.sem_seg_head = nn.Module()
        self.sem_seg_head.pixel_decoder = PixelDecoder(cfg, self.backbone.dims)
        self.sem_seg_head.predictor = Predictor(cfg)
        self.task_mlp = MLP([TASK_LENGTH, cfg.dim, cfg.dim])

    def forward(self, x: torch.Tensor, task_tokens: torch.Tensor):
        mask_features, scales = self.sem_seg_head.pixel_decoder(self.backbone(x))
        return self.sem_seg_head.predictor(scales, mask_features, self.task_mlp(task_tokens.to(x.dtype)))


def task_tokens(device=None) -> torch.Tensor:
    tokens = torch.zeros(1, TASK_LENGTH, dtype=torch.long, device=device)
    tokens[0, :len(TASK_TOKENS)] = torch.tensor(TASK_TOKENS)
    return tokens


# Training-only parts of the published checkpoints: the text encoder and its projection for the contrastive
# loss, their prompt context, and the loss's class weights.
TRAINING_ONLY = ("text_encoder.*", "text_projector.*", "prompt_ctx.*", "criterion.*")
_ANNOTATORS = "https://huggingface.co/lllyasviel/Annotators"
ONEFORMER_ADE20K = NetSpec("OneFormer Swin-L (ADE20K)",
                           WeightFile(("250_16_swin_l_oneformer_ade20k_160k.pth",), "oneformer", _ANNOTATORS),
                           lambda state: OneFormer(ADE20K_CONFIG), ignore=TRAINING_ONLY)
ONEFORMER_COCO = NetSpec("OneFormer Swin-L (COCO)",
                         WeightFile(("150_16_swin_l_oneformer_coco_100ep.pth",), "oneformer", _ANNOTATORS),
                         lambda state: OneFormer(COCO_CONFIG), ignore=TRAINING_ONLY)


@dataclass(frozen=True)
class Variant:
    spec: NetSpec
    palette: np.ndarray
    min_size: int
    max_size: int


# The published configs' test sizes: ADE20K 640 (long side <= 2560), COCO detectron2's default 800 (<= 1333).
VARIANTS = {"ade20k": Variant(ONEFORMER_ADE20K, ADE20K, 640, 2560),
            "coco": Variant(ONEFORMER_COCO, COCO_PANOPTIC, 800, 1333)}


def test_size(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """detectron2's ResizeShortestEdge: (height, width) with the short side min_size, the long one at most
    max_size, rounded half up."""
    scale = min_size / min(height, width)
    new_h, new_w = (min_size, scale * width) if height < width else (scale * height, min_size)
    if max(new_h, new_w) > max_size:
        scale = max_size / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def network_input(rgb: np.ndarray, min_size: int, max_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(1 x 3 x H x W normalised and zero-padded to a multiple of 32, the resized image's (h, w))."""
    new_h, new_w = test_size(*rgb.shape[:2], min_size, max_size)
    pil = Image.fromarray(rgb)
    if pil.size != (new_w, new_h):
        pil = pil.resize((new_w, new_h), Image.BILINEAR)
    x = (torch.from_numpy(np.asarray(pil, dtype=np.float32).transpose(2, 0, 1).copy()) - MEAN) / STD
    x = F.pad(x, (0, -new_w % SIZE_DIVISIBILITY, 0, -new_h % SIZE_DIVISIBILITY))
    return x[None], (new_h, new_w)


def semantic_classes(net: OneFormer, rgb: np.ndarray, device: torch.device, min_size: int, max_size: int
                     ) -> np.ndarray:
    """H x W class indices of an RGB image: OneFormer's semantic inference resized back to the image."""
    x, (h, w) = network_input(rgb, min_size, max_size)
    classes, masks = net(x.to(device), task_tokens(device))
    masks = F.interpolate(masks, size=x.shape[2:], mode="bilinear", align_corners=False)[:, :, :h, :w]
    masks = F.interpolate(masks, size=rgb.shape[:2], mode="bilinear", align_corners=False)[0]
    probabilities = F.softmax(classes[0], dim=-1)[:, :-1]
    semantic = torch.einsum("qc,qhw->chw", probabilities, masks.sigmoid())
    return semantic.argmax(dim=0).cpu().numpy()


def oneformer(image: np.ndarray, resolution: float, dataset: str, models: AnnotatorModels | None = None
              ) -> np.ndarray:
    variant = VARIANTS[dataset]
    models = default_models() if models is None else models
    img = resize_short_side(hwc3(image), resolution)
    height, width = img.shape[:2]
    net = models.get(variant.spec)
    with models.running(net) as device:
        classes = semantic_classes(net, pad_to(img), device, variant.min_size, variant.max_size)
    return np.ascontiguousarray(variant.palette[classes[:height, :width]])


def seg_ofade20k(image: np.ndarray, resolution: float, models: AnnotatorModels | None = None) -> np.ndarray:
    return oneformer(image, resolution, "ade20k", models)


def seg_ofcoco(image: np.ndarray, resolution: float, models: AnnotatorModels | None = None) -> np.ndarray:
    return oneformer(image, resolution, "coco", models)
