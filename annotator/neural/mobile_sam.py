"""mobile_sam: MobileSAM (mobile_sam.pt, dhkim2810/MobileSAM) - SAM's prompt encoder and mask decoder on a
TinyViT-5M image encoder - run as SAM's automatic mask generator, every mask painted in its own colour.

The network, in the published layout: TinyViT (a stride-4 conv stem; MBConv blocks at 1/4; windowed attention
blocks with learned relative biases at 1/8, 1/16, 1/16; a neck to 256 channels) turns the 1024 x 1024 padded
image into a 64 x 64 embedding; a point prompt (random Fourier position features) and that embedding go through
SAM's two-way transformer and hypernetwork heads to three candidate masks (256 x 256 logits) and their
predicted IoUs.

The generator (SAM's defaults, as controlnet_aux's SamDetector uses them): a 32 x 32 grid of single-point
prompts over the image, in batches; masks kept when the predicted IoU is over 0.88 and the stability score
(the area above logit +1 over the area above -1) at least 0.95; box NMS at IoU 0.7 by predicted IoU. Painted
largest first, so smaller masks lie on top.

Differences from the reference: colours come from a fixed seed (the reference draws them from NumPy's global
random state, so the same photo gives a different map each time); an image where no mask survives gives a
black map (the reference fails).
"""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..util import hwc3
from .runtime import AnnotatorModels, default_models
from .weights import NetSpec, WeightFile

IMAGE_SIZE = 1024
PATCH = 16  # the embedding is IMAGE_SIZE / 16 on a side
EMBED_DIM = 256
MEAN = torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1)

TINY_VIT = dict(dims=(64, 128, 160, 320), depths=(2, 2, 6, 2), heads=(2, 4, 5, 10), windows=(7, 7, 14, 7))

POINTS_PER_SIDE = 32
PRED_IOU_THRESHOLD = 0.88
STABILITY_THRESHOLD = 0.95
STABILITY_OFFSET = 1.0
BOX_NMS_IOU = 0.7
COLOUR_SEED = 0


# --- TinyViT -----------------------------------------------------------------------------------------------
class ConvBn(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1):
        super().__init__()
        self.c = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)


class MBConv(nn.Module):
    def __init__(self, dim: int, expand: float = 4.0):
        super().__init__()
        hidden = int(dim * expand)
        self.conv1 = ConvBn(dim, hidden)
        self.conv2 = ConvBn(hidden, hidden, 3, groups=hidden)
        self.conv3 = ConvBn(hidden, dim)

    def forward(self, x):
        y = F.gelu(self.conv2(F.gelu(self.conv1(x))))
        return F.gelu(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """1x1, depth-wise 3x3 (stride 2, or 1 into the last stage's 320 channels, as MobileSAM has it), 1x1."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.conv1 = ConvBn(dim, out_dim)
        self.conv2 = ConvBn(out_dim, out_dim, 3, stride=1 if out_dim in (320, 448, 576) else 2, groups=out_dim)
        self.conv3 = ConvBn(out_dim, out_dim)

    def forward(self, x):
        return self.conv3(F.gelu(self.conv2(F.gelu(self.conv1(x)))))


class WindowAttention(nn.Module):
    """Multi-head attention inside a window, with a learned bias per head for each (|dy|, |dx|) offset. The
    qkv projection is laid out per head as [q, k, v] (TinyViT's, not the usual [all q, all k, all v])."""

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.heads = heads
        self.key_dim = dim // heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        points = list(itertools.product(range(window), range(window)))
        offsets: dict[tuple[int, int], int] = {}
        indices = []
        for p1 in points:
            for p2 in points:
                indices.append(offsets.setdefault((abs(p1[0] - p2[0]), abs(p1[1] - p2[1])), len(offsets)))
        self.attention_biases = nn.Parameter(torch.zeros(heads, len(offsets)))
        self.register_buffer("attention_bias_idxs", torch.tensor(indices).view(len(points), len(points)),
                             persistent=False)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, n, self.heads, -1).split([self.key_dim] * 3, dim=3)
        bias = self.attention_biases[:, self.attention_bias_idxs]
        x = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           attn_mask=bias.to(q.dtype))
        return self.proj(x.transpose(1, 2).reshape(b, n, -1))


class TinyViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.window = window
        self.attn = WindowAttention(dim, heads, window)
        self.mlp = nn.Module()
        self.mlp.norm = nn.LayerNorm(dim)
        self.mlp.fc1 = nn.Linear(dim, dim * 4)
        self.mlp.fc2 = nn.Linear(dim * 4, dim)
        self.local_conv = ConvBn(dim, dim, 3, groups=dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        s = self.window
        if h == s and w == s:
            y = self.attn(x)
        else:  # windows of s x s (padded with zeros at the bottom/right)
            y = F.pad(x.view(b, h, w, c), (0, 0, 0, -w % s, 0, -h % s))
            ph, pw = y.shape[1:3]
            y = y.view(b, ph // s, s, pw // s, s, c).transpose(2, 3).reshape(-1, s * s, c)
            y = self.attn(y).view(b, ph // s, pw // s, s, s, c).transpose(2, 3).reshape(b, ph, pw, c)
            y = y[:, :h, :w].reshape(b, n, c)
        x = x + y
        x = self.local_conv(x.transpose(1, 2).reshape(b, c, h, w)).view(b, c, n).transpose(1, 2)
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.mlp.norm(x))))


class LayerNorm2d(nn.Module):
    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        return self.weight[:, None, None] * ((x - u) / torch.sqrt(s + self.eps)) + self.bias[:, None, None]


class TinyViT(nn.Module):
    """Normalised, padded RGB (N x 3 x S x S) -> the image embedding (N x 256 x S/16 x S/16)."""

    def __init__(self, dims=TINY_VIT["dims"], depths=TINY_VIT["depths"], heads=TINY_VIT["heads"],
                 windows=TINY_VIT["windows"], classes: int = 1000):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.seq = nn.Sequential(ConvBn(3, dims[0] // 2, 3, 2), nn.GELU(),
                                             ConvBn(dims[0] // 2, dims[0], 3, 2))
        self.layers = nn.ModuleList()
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            layer = nn.Module()
            if i == 0:
                layer.blocks = nn.ModuleList(MBConv(dim) for _ in range(depth))
            else:
                layer.blocks = nn.ModuleList(TinyViTBlock(dim, heads[i], windows[i]) for _ in range(depth))
            if i < len(dims) - 1:
                layer.downsample = PatchMerging(dim, dims[i + 1])
            self.layers.append(layer)
        # TinyViT's ImageNet classifier: in the file, unused by SAM.
        self.norm_head = nn.LayerNorm(dims[-1])
        self.head = nn.Linear(dims[-1], classes)
        self.neck = nn.Sequential(nn.Conv2d(dims[-1], EMBED_DIM, 1, bias=False), LayerNorm2d(EMBED_DIM),
                                  nn.Conv2d(EMBED_DIM, EMBED_DIM, 3, padding=1, bias=False), LayerNorm2d(EMBED_DIM))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.seq(x)
        for block in self.layers[0].blocks:
            x = block(x)
        x = self.layers[0].downsample(x)  # N x C x H x W
        h, w = x.shape[2:]
        x = x.flatten(2).transpose(1, 2)
        for layer in self.layers[1:]:
            for block in layer.blocks:
                x = block(x, h, w)
            if hasattr(layer, "downsample"):
                x = layer.downsample(x.transpose(1, 2).reshape(x.shape[0], -1, h, w))
                h, w = x.shape[2:]
                x = x.flatten(2).transpose(1, 2)
        return self.neck(x.transpose(1, 2).reshape(x.shape[0], -1, h, w))


# --- SAM's prompt encoder and mask decoder ------------------------------------------------------------------
class PromptEncoder(nn.Module):
    def __init__(self, image_size: int = IMAGE_SIZE, dim: int = EMBED_DIM, mask_channels: int = 16):
        super().__init__()
        self.image_size = image_size
        self.grid = image_size // PATCH
        self.pe_layer = nn.Module()
        self.pe_layer.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, dim // 2))
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, dim) for _ in range(4))  # neg, pos, 2 box corners
        self.not_a_point_embed = nn.Embedding(1, dim)
        # Mask prompts (unused by the automatic generator; part of the file).
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_channels // 4, 2, stride=2), LayerNorm2d(mask_channels // 4), nn.GELU(),
            nn.Conv2d(mask_channels // 4, mask_channels, 2, stride=2), LayerNorm2d(mask_channels), nn.GELU(),
            nn.Conv2d(mask_channels, dim, 1))
        self.no_mask_embed = nn.Embedding(1, dim)

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """Random Fourier features of coordinates in [0, 1]."""
        coords = (2 * coords - 1) @ self.pe_layer.positional_encoding_gaussian_matrix.to(coords.dtype)
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def dense_pe(self) -> torch.Tensor:
        """The encoding of each embedding cell's centre: 1 x 256 x grid x grid."""
        centres = (torch.arange(self.grid, dtype=torch.float32, device=self.no_mask_embed.weight.device) + 0.5)
        centres = centres / self.grid
        ys, xs = torch.meshgrid(centres, centres, indexing="ij")
        return self.encode(torch.stack([xs, ys], dim=-1)).permute(2, 0, 1)[None]

    def forward(self, points: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Point prompts (B x N x 2 pixels of the 1024 frame, labels 1 = foreground) -> sparse tokens (with the
        padding point SAM adds when there is no box) and the dense "no mask" embedding."""
        b = points.shape[0]
        points = torch.cat([points + 0.5, torch.zeros(b, 1, 2, device=points.device, dtype=points.dtype)], dim=1)
        labels = torch.cat([labels, -torch.ones(b, 1, device=labels.device, dtype=labels.dtype)], dim=1)
        # Normalised in the coordinates' own precision (float64 from the generator), then float32, as SAM does.
        sparse = self.encode((points / self.image_size).to(self.no_mask_embed.weight.dtype))
        sparse = torch.where((labels == -1)[..., None], torch.zeros_like(sparse), sparse)
        for label, embedding in ((-1, self.not_a_point_embed), (0, self.point_embeddings[0]),
                                 (1, self.point_embeddings[1])):
            sparse = sparse + (labels == label)[..., None] * embedding.weight
        dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(b, -1, self.grid, self.grid)
        return sparse, dense


class Attention(nn.Module):
    def __init__(self, dim: int = EMBED_DIM, heads: int = 8, downsample: int = 1):
        super().__init__()
        self.heads = heads
        inner = dim // downsample
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(dim, inner) for _ in range(3))
        self.out_proj = nn.Linear(inner, dim)

    def forward(self, q, k, v):
        def heads(x):
            b, n, c = x.shape
            return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.q_proj(q)), heads(self.k_proj(k)), heads(self.v_proj(v)))
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, -1))


class TwoWayBlock(nn.Module):
    def __init__(self, dim: int = EMBED_DIM, mlp_dim: int = 2048, first: bool = False):
        super().__init__()
        self.first = first  # the first block's self-attention sees the tokens without their position
        self.self_attn = Attention(dim)
        self.cross_attn_token_to_image = Attention(dim, downsample=2)
        self.cross_attn_image_to_token = Attention(dim, downsample=2)
        self.mlp = nn.Module()
        self.mlp.lin1 = nn.Linear(dim, mlp_dim)
        self.mlp.lin2 = nn.Linear(mlp_dim, dim)
        self.norm1, self.norm2, self.norm3, self.norm4 = (nn.LayerNorm(dim) for _ in range(4))

    def forward(self, queries, keys, query_pe, key_pe):
        if self.first:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        queries = self.norm2(queries + self.cross_attn_token_to_image(queries + query_pe, keys + key_pe, keys))
        queries = self.norm3(queries + self.mlp.lin2(F.relu(self.mlp.lin1(queries))))
        keys = self.norm4(keys + self.cross_attn_image_to_token(keys + key_pe, queries + query_pe, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, dim: int = EMBED_DIM, depth: int = 2):
        super().__init__()
        self.layers = nn.ModuleList(TwoWayBlock(dim, first=i == 0) for i in range(depth))
        self.final_attn_token_to_image = Attention(dim, downsample=2)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image, image_pe, tokens):
        keys = image.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        queries = queries + self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys)
        return self.norm_final_attn(queries), keys


class MLP(nn.Module):
    def __init__(self, dim_in: int, hidden: int, dim_out: int, depth: int = 3):
        super().__init__()
        sizes = [dim_in] + [hidden] * (depth - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:] + [dim_out]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


class MaskDecoder(nn.Module):
    def __init__(self, dim: int = EMBED_DIM, masks: int = 3):
        super().__init__()
        self.transformer = TwoWayTransformer(dim)
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(masks + 1, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, 2, stride=2), LayerNorm2d(dim // 4), nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, 2, stride=2), nn.GELU())
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(dim, dim, dim // 8) for _ in range(masks + 1))
        self.iou_prediction_head = MLP(dim, 256, masks + 1)

    def forward(self, image, image_pe, sparse, dense) -> tuple[torch.Tensor, torch.Tensor]:
        """The three multimask outputs: (B x 3 x 4g x 4g logits, B x 3 predicted IoUs)."""
        b = sparse.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens[None].expand(b, -1, -1), sparse], dim=1)
        src = image.expand(b, -1, -1, -1) + dense
        hs, src = self.transformer(src, image_pe.expand(b, -1, -1, -1), tokens)
        _, c, h, w = image.shape
        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper = torch.stack([mlp(hs[:, 1 + i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        masks = (hyper @ upscaled.flatten(2)).view(b, -1, *upscaled.shape[2:])
        iou = self.iou_prediction_head(hs[:, 0])
        return masks[:, 1:], iou[:, 1:]


class MobileSam(nn.Module):
    def __init__(self, image_size: int = IMAGE_SIZE):
        super().__init__()
        self.image_size = image_size
        self.image_encoder = TinyViT()
        self.prompt_encoder = PromptEncoder(image_size)
        self.mask_decoder = MaskDecoder()


MOBILE_SAM = NetSpec("MobileSAM", WeightFile(("mobile_sam.pt",), "mobile_sam",
                                             repo="https://huggingface.co/dhkim2810/MobileSAM"),
                     lambda state: MobileSam())


# --- the automatic mask generator -----------------------------------------------------------------------------
def longest_side_size(height: int, width: int, target: int) -> tuple[int, int]:
    scale = target / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def point_grid(per_side: int) -> np.ndarray:
    """per_side^2 points (x, y) in [0, 1], cell centres, x running fastest."""
    centres = np.linspace(1 / (2 * per_side), 1 - 1 / (2 * per_side), per_side)
    return np.stack([np.tile(centres, per_side), np.repeat(centres, per_side)], axis=1)


def stability_score(logits: torch.Tensor, offset: float = STABILITY_OFFSET) -> torch.Tensor:
    inside = (logits > offset).flatten(1).sum(1)
    outside = (logits > -offset).flatten(1).sum(1)
    return inside / outside


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Inclusive (x0, y0, x1, y1) pixel boxes of boolean masks (0, 0, 0, 0 for an empty one)."""
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    h, w = masks.shape[1:]
    ys, xs = torch.arange(h, device=masks.device), torch.arange(w, device=masks.device)
    top = torch.where(rows, ys, h).min(1).values
    bottom = torch.where(rows, ys, -1).max(1).values
    left = torch.where(cols, xs, w).min(1).values
    right = torch.where(cols, xs, -1).max(1).values
    boxes = torch.stack([left, top, right, bottom], dim=1)
    return boxes * (rows.any(1))[:, None]


def box_nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float | None = None) -> torch.Tensor:
    """Greedy NMS as torchvision's (continuous areas, a box goes when its IoU with a kept one is > iou); the
    kept indices by decreasing score."""
    iou = BOX_NMS_IOU if iou is None else iou
    boxes = boxes.double()
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = torch.argsort(scores, descending=True, stable=True)
    keep = []
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        lt = torch.maximum(boxes[i, :2], boxes[:, :2])
        rb = torch.minimum(boxes[i, 2:], boxes[:, 2:])
        inter = (rb - lt).clamp(min=0).prod(dim=1)
        suppressed |= inter / (areas[i] + areas - inter) > iou
    return torch.tensor(keep, dtype=torch.long)


def generate_masks(sam: MobileSam, rgb: np.ndarray, device: torch.device, points_per_side: int = POINTS_PER_SIDE,
                   batch: int = 64) -> list[np.ndarray]:
    """The automatic generator's masks (boolean H x W arrays) for one image, in NMS order."""
    height, width = rgb.shape[:2]
    new_h, new_w = longest_side_size(height, width, sam.image_size)
    resized = np.array(Image.fromarray(rgb).resize((new_w, new_h), Image.BILINEAR))
    x = (torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1).float() - MEAN) / STD
    x = F.pad(x, (0, sam.image_size - new_w, 0, sam.image_size - new_h))[None].to(device)
    embedding = sam.image_encoder(x)
    image_pe = sam.prompt_encoder.dense_pe()
    points = point_grid(points_per_side) * np.array([width, height])
    coords = torch.from_numpy(points * np.array([new_w / width, new_h / height])).to(device)  # float64
    kept_masks, kept_iou = [], []
    for start in range(0, len(coords), batch):
        chunk = coords[start:start + batch, None, :]
        sparse, dense = sam.prompt_encoder(chunk, torch.ones(chunk.shape[:2], device=device))
        low_res, iou = sam.mask_decoder(embedding, image_pe, sparse, dense)
        logits = F.interpolate(low_res, (sam.image_size, sam.image_size), mode="bilinear", align_corners=False)
        logits = F.interpolate(logits[..., :new_h, :new_w], (height, width), mode="bilinear", align_corners=False)
        logits, iou = logits.flatten(0, 1), iou.flatten(0, 1)
        keep = iou > PRED_IOU_THRESHOLD
        logits, iou = logits[keep], iou[keep]
        keep = stability_score(logits) >= STABILITY_THRESHOLD
        kept_masks.append((logits[keep] > 0).cpu())
        kept_iou.append(iou[keep].float().cpu())
    masks, iou = torch.cat(kept_masks), torch.cat(kept_iou)
    if not len(masks):
        return []
    # The reference drops boxes near a crop's edge unless near the image's edge too: with the one whole-image
    # crop it uses, nothing is dropped.
    keep = box_nms(mask_boxes(masks).float(), iou)
    return [masks[i].numpy() for i in keep.tolist()]


def paint(masks: list[np.ndarray], height: int, width: int, seed: int = COLOUR_SEED) -> np.ndarray:
    """Each mask in its own colour, largest first (a stable sort: equal areas keep their order)."""
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    colours = np.random.default_rng(seed).integers(0, 255, size=(len(masks), 3), dtype=np.uint8)
    for index in sorted(range(len(masks)), key=lambda i: -int(masks[i].sum())):
        canvas[masks[index]] = colours[index]
    return canvas


def detect_size(height: int, width: int, resolution: float) -> tuple[int, int]:
    """controlnet_aux's resize_image: the short side to `resolution`, then both sides rounded to 64."""
    k = float(resolution) / min(height, width)
    return int(np.round(height * k / 64.0)) * 64, int(np.round(width * k / 64.0)) * 64


def mobile_sam(image: np.ndarray, resolution: float, models: AnnotatorModels | None = None,
               points_per_side: int = POINTS_PER_SIDE) -> np.ndarray:
    """The painted masks at controlnet_aux's detect size (short side near `resolution`, multiples of 64)."""
    models = default_models() if models is None else models
    img = hwc3(image)
    height, width = detect_size(*img.shape[:2], resolution)
    enlarging = resolution > min(img.shape[:2])
    img = cv2.resize(img, (width, height), interpolation=cv2.INTER_LANCZOS4 if enlarging else cv2.INTER_AREA)
    sam = models.get(MOBILE_SAM)
    with models.running(sam) as device:
        batch = 64 if device.type != "cpu" else 16  # the same masks either way; less memory on the CPU
        masks = generate_masks(sam, img, device, points_per_side, batch)
    return paint(masks, height, width)
