"""ZoeDepth (ZoeD_M12_N.pt): metric depth from MiDaS v3.1's DPT-BEiT-L/384 and ZoeDepth's metric-bins head,
with the upstream module names (`core.core.*` is the MiDaS network, the rest ZoeDepth's head).

- Backbone: timm's `beit_large_patch16_384` as MiDaS runs it: relative position bias tables resized
  (bilinear) to the window of the input, so any size that is a multiple of 16 works; blocks 5, 11, 17 and
  23 are read out ("project" readout) and reassembled into a four-level pyramid that DPT fuses.
- Head: MiDaS' relative depth, its 32-channel last activation and the fusion outputs feed the metric head:
  seed bin centres from the bottleneck, moved by four attractor layers (inverse attractors, mean), and a
  per-pixel log-binomial distribution over the 64 bins whose expectation is the depth.
- Inference as the reference runs it: reflect padding of sqrt(side / 2) * 3 pixels, resized to about
  384 x 512 (multiples of 32, aspect ratio kept), and the average with the horizontally flipped image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..util import apply_padded, gray_to_rgb, hwc3, resize_short_side
from .runtime import AnnotatorModels, default_models, image_tensor
from .vit import VIT_LAYER_NORM_EPS, Mlp, make_scratch
from .weights import NetSpec, WeightFile

PATCH = 16
NET_SIZE = (384, 512)  # height, width the reference's config resizes to ("minimal" change, multiples of 32)
NET_MULTIPLE = 32
PAD_FACTOR = 3.0  # padding = int(sqrt(side / 2) * 3) on each side, reflected
NEAR_PERCENTILE, FAR_PERCENTILE = 2, 85  # the reference's map normalisation


@dataclass(frozen=True)
class ZoeSize:
    dim: int = 1024
    depth: int = 24
    heads: int = 16
    hooks: tuple[int, int, int, int] = (5, 11, 17, 23)
    neck: tuple[int, int, int, int] = (256, 512, 1024, 1024)
    features: int = 256
    window: int = 24  # the grid the position bias tables were trained on (384 / 16)
    relative_features: int = 32  # MiDaS head's last activation, the metric head's main input
    bins: int = 64
    bin_embedding: int = 128
    attractors: tuple[int, ...] = (16, 8, 4, 1)


PUBLISHED = ZoeSize()
# The config says alpha = 1000, but upstream calls the attractor function without it, so its default, 300,
# is what the published model runs (and was trained) with.
ATTRACTOR_ALPHA = 300.0
ATTRACTOR_GAMMA = 2
MIN_TEMP, MAX_TEMP = 0.0212, 50.0
P_EPS = 1e-4


# --- BEiT ----------------------------------------------------------------------------------------------------


def relative_position_index(rows: int, cols: int) -> torch.Tensor:
    """(rows * cols + 1)^2 indices into a bias table of (2 rows - 1)(2 cols - 1) + 3 entries: token pairs by
    their offset, then class-to-token, token-to-class and class-to-class."""
    coords = torch.stack(torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")).flatten(1)
    offsets = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    distances = (2 * rows - 1) * (2 * cols - 1)
    index = torch.zeros((rows * cols + 1,) * 2, dtype=torch.long)
    index[1:, 1:] = (offsets[:, :, 0] + rows - 1) * (2 * cols - 1) + offsets[:, :, 1] + cols - 1
    index[0, :] = distances
    index[:, 0] = distances + 1
    index[0, 0] = distances + 2
    return index


class BeitAttention(nn.Module):
    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2 + 3, heads))
        self.proj = nn.Linear(dim, dim)
        self._index: dict[tuple[int, int], torch.Tensor] = {}

    def relative_bias(self, rows: int, cols: int) -> torch.Tensor:
        """heads x N x N: the token-pair part of the table resized (bilinear) to the grid's offsets."""
        table = self.relative_position_bias_table
        side = 2 * self.window - 1
        pairs = table[:side * side].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        pairs = F.interpolate(pairs, size=(2 * rows - 1, 2 * cols - 1), mode="bilinear")
        table = torch.cat([pairs.permute(0, 2, 3, 1).reshape((2 * rows - 1) * (2 * cols - 1), -1), table[side * side:]])
        if (rows, cols) not in self._index:
            self._index[(rows, cols)] = relative_position_index(rows, cols)
        index = self._index[(rows, cols)].to(table.device)
        n = rows * cols + 1
        return table[index.view(-1)].view(n, n, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        b, n, d = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        q, k, v = F.linear(x, self.qkv.weight, bias).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.relative_bias(rows, cols)[None].to(q.dtype))
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class BeitBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=VIT_LAYER_NORM_EPS)
        self.attn = BeitAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim, eps=VIT_LAYER_NORM_EPS)
        self.mlp = Mlp(dim, 4 * dim)
        self.gamma_1 = nn.Parameter(torch.ones(dim))
        self.gamma_2 = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        x = x + self.gamma_1 * self.attn(self.norm1(x), rows, cols)
        return x + self.gamma_2 * self.mlp(self.norm2(x))


class Beit(nn.Module):
    def __init__(self, size: ZoeSize):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, size.dim, PATCH, stride=PATCH)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, size.dim))
        self.blocks = nn.ModuleList(BeitBlock(size.dim, size.heads, size.window) for _ in range(size.depth))

    def forward(self, x: torch.Tensor, hooks: tuple[int, ...]) -> list[torch.Tensor]:
        rows, cols = x.shape[2] // PATCH, x.shape[3] // PATCH
        tokens = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        hooked = []
        for index, block in enumerate(self.blocks[:hooks[-1] + 1]):
            tokens = block(tokens, rows, cols)
            if index in hooks:
                hooked.append(tokens)
        return hooked


# --- MiDaS DPT-BEiT ------------------------------------------------------------------------------------------


class _Readout(nn.Module):
    """Each patch token concatenated with the class token, projected back to the token width."""

    def __init__(self, dim: int):
        super().__init__()
        self.project = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, 1:]
        return self.project(torch.cat([patches, tokens[:, :1].expand_as(patches)], dim=-1))


def _postprocess(dim: int, channels: int, resize: nn.Module | None) -> nn.Sequential:
    """Readout at index 0, the projection at 3 and the resampling at 4, as the file numbers them."""
    layers = [_Readout(dim), nn.Identity(), nn.Identity(), nn.Conv2d(dim, channels, 1)]
    return nn.Sequential(*(layers + ([resize] if resize is not None else [])))


class MidasBeit(nn.Module):
    """MiDaS v3.1 DPT with a BEiT backbone. Returns the relative depth (B x H x W) and the features the metric
    head reads: the head's 32-channel activation, the bottleneck (layer4_rn) and the four fusion outputs."""

    def __init__(self, size: ZoeSize):
        super().__init__()
        self.size = size
        c = size.neck
        self.pretrained = nn.Module()
        self.pretrained.model = Beit(size)
        self.pretrained.act_postprocess1 = _postprocess(size.dim, c[0], nn.ConvTranspose2d(c[0], c[0], 4, stride=4))
        self.pretrained.act_postprocess2 = _postprocess(size.dim, c[1], nn.ConvTranspose2d(c[1], c[1], 2, stride=2))
        self.pretrained.act_postprocess3 = _postprocess(size.dim, c[2], None)
        self.pretrained.act_postprocess4 = _postprocess(size.dim, c[3], nn.Conv2d(c[3], c[3], 3, stride=2, padding=1))
        f = size.features
        self.scratch = make_scratch(list(c), f)
        self.scratch.output_conv = nn.Sequential(
            nn.Conv2d(f, f // 2, 3, padding=1), nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(f // 2, size.relative_features, 3, padding=1), nn.ReLU(),
            nn.Conv2d(size.relative_features, 1, 1), nn.ReLU(), nn.Identity())

    def forward(self, x: torch.Tensor):
        rows, cols = x.shape[2] // PATCH, x.shape[3] // PATCH
        levels = []
        for index, tokens in enumerate(self.pretrained.model(x, self.size.hooks), start=1):
            post = getattr(self.pretrained, f"act_postprocess{index}")
            grid = post[0](tokens).transpose(1, 2).reshape(tokens.shape[0], -1, rows, cols)
            for layer in list(post)[3:]:
                grid = layer(grid)
            levels.append(grid)
        fused = []
        scratch = self.scratch
        l1, l2, l3, l4 = (getattr(scratch, f"layer{i}_rn")(level) for i, level in enumerate(levels, start=1))
        fused.append(scratch.refinenet4(l4, size=l3.shape[2:]))
        fused.append(scratch.refinenet3(fused[-1], l3, size=l2.shape[2:]))
        fused.append(scratch.refinenet2(fused[-1], l2, size=l1.shape[2:]))
        fused.append(scratch.refinenet1(fused[-1], l1))
        head = scratch.output_conv
        activation = head[3](head[2](head[1](head[0](fused[-1]))))
        relative = head[5](head[4](activation)).squeeze(1)
        return relative, activation, l4, fused


# --- ZoeDepth's metric head ----------------------------------------------------------------------------------


def _mlp(cin: int, hidden: int, cout: int, last: nn.Module | None) -> nn.Module:
    """A 1x1-conv MLP kept in a `_net` Sequential, as the file names it."""
    holder = nn.Module()
    layers = [nn.Conv2d(cin, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, cout, 1)]
    holder._net = nn.Sequential(*(layers + ([last] if last is not None else [])))
    return holder


def inverse_attractor(dx: torch.Tensor, alpha: float = ATTRACTOR_ALPHA, gamma: int = ATTRACTOR_GAMMA) -> torch.Tensor:
    """How far an attractor at distance dx pulls a bin centre: dx / (1 + alpha dx^gamma)."""
    return dx / (1 + alpha * dx.pow(gamma))


def attract(attractors: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Bin centres (B x bins x H x W) moved by the mean pull of the attractor points (B x n x H x W)."""
    return centres + inverse_attractor(attractors.unsqueeze(2) - centres.unsqueeze(1)).mean(dim=1)


def log_binomial(p: torch.Tensor, temperature: torch.Tensor, bins: int, eps: float = P_EPS) -> torch.Tensor:
    """softmax over k of log(C(bins-1, k) p^k (1-p)^(bins-1-k)) / t, C from Stirling's approximation as upstream."""
    k = torch.arange(bins, device=p.device, dtype=p.dtype).view(1, -1, 1, 1)
    n = torch.tensor(float(bins - 1), device=p.device, dtype=p.dtype)
    ne, ke = n + 1e-7, k + 1e-7
    log_choose = ne * torch.log(ne) - ke * torch.log(ke) - (ne - ke) * torch.log(ne - ke + 1e-7)
    p = p.unsqueeze(1)
    y = log_choose + k * torch.log(p.clamp(eps, 1)) + (bins - 1 - k) * torch.log((1 - p).clamp(eps, 1))
    return torch.softmax(y / temperature, dim=1)


class _LogBinomial(nn.Module):
    """Holds the file's two constant buffers (bin indices, bins - 1); the values are rebuilt in log_binomial."""

    def __init__(self, bins: int):
        super().__init__()
        self.register_buffer("k_idx", torch.arange(bins).view(1, -1, 1, 1))
        self.register_buffer("K_minus_1", torch.tensor([float(bins - 1)]).view(1, -1, 1, 1))


class _ConditionalLogBinomial(nn.Module):
    def __init__(self, cin: int, condition: int, bins: int):
        super().__init__()
        hidden = (cin + condition) // 2
        self.mlp = nn.Sequential(nn.Conv2d(cin + condition, hidden, 1), nn.GELU(), nn.Conv2d(hidden, 4, 1),
                                 nn.Softplus())
        self.log_binomial_transform = _LogBinomial(bins)
        self.bins = bins

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        pt = self.mlp(torch.cat([x, condition], dim=1)) + P_EPS
        p = pt[:, 0] / (pt[:, 0] + pt[:, 1])
        t = (pt[:, 2] / (pt[:, 2] + pt[:, 3])).unsqueeze(1)
        return log_binomial(p, (MAX_TEMP - MIN_TEMP) * t + MIN_TEMP, self.bins)


def _resized(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, like.shape[-2:], mode="bilinear", align_corners=True)


class ZoeDepth(nn.Module):
    """MiDaS-normalised RGB ((x - 0.5) / 0.5, sides multiples of 32) -> metric depth in metres (B x H x W)."""

    def __init__(self, size: ZoeSize = PUBLISHED):
        super().__init__()
        self.core = nn.Module()
        self.core.core = MidasBeit(size)
        f, e = size.features, size.bin_embedding
        self.conv2 = nn.Conv2d(f, f, 1)
        self.seed_bin_regressor = _mlp(f, 256, size.bins, nn.Softplus())
        self.seed_projector = _mlp(f, 128, e, None)
        self.projectors = nn.ModuleList(_mlp(f, 128, e, None) for _ in size.attractors)
        self.attractors = nn.ModuleList(_mlp(e, 128, n, nn.Softplus()) for n in size.attractors)
        self.conditional_log_binomial = _ConditionalLogBinomial(size.relative_features + 1, e, size.bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        relative, activation, bottleneck, fused = self.core.core(x)
        x0 = self.conv2(bottleneck)
        centres = self.seed_bin_regressor._net(x0)
        embedding = self.seed_projector._net(x0)
        for projector, attractor, block in zip(self.projectors, self.attractors, fused):
            new_embedding = projector._net(block)
            points = attractor._net(new_embedding + _resized(embedding, new_embedding))
            centres = attract(points, _resized(centres, points))
            embedding = new_embedding
        main = torch.cat([activation, _resized(relative.unsqueeze(1), activation)], dim=1)
        probabilities = self.conditional_log_binomial(main, _resized(embedding, main))
        return (probabilities * _resized(centres, probabilities)).sum(dim=1)


def build(_state=None) -> ZoeDepth:
    return ZoeDepth(PUBLISHED)


ZOE = NetSpec("ZoeDepth (ZoeD_M12_N)", WeightFile(("ZoeD_M12_N.pt",), "zoedepth"), build,
              # timm's classifier and pooling norm and its saved position indices, which are rebuilt here
              ignore=("core.core.pretrained.model.head.*", "core.core.pretrained.model.fc_norm.*",
                      "core.core.pretrained.model.blocks.*.attn.relative_position_index"))


def network_size(height: int, width: int) -> tuple[int, int]:
    """The reference's "minimal" resize: the scale of the side nearer its target (384 high, 512 wide) for
    both, each side rounded to a multiple of 32."""
    scale_h, scale_w = NET_SIZE[0] / height, NET_SIZE[1] / width
    scale = scale_w if abs(1 - scale_w) < abs(1 - scale_h) else scale_h

    def fit(x: float) -> int:
        return int(np.round(x / NET_MULTIPLE) * NET_MULTIPLE)

    return fit(scale * height), fit(scale * width)


def _metric(net: ZoeDepth, x: torch.Tensor) -> torch.Tensor:
    """Reflect-padded, resized for the network, predicted, back to the padded size (bicubic), unpadded."""
    height, width = x.shape[2:]
    pad_h, pad_w = int(np.sqrt(height / 2) * PAD_FACTOR), int(np.sqrt(width / 2) * PAD_FACTOR)
    x = F.pad(x, [pad_w, pad_w, pad_h, pad_h], mode="reflect")
    resized = F.interpolate(x, network_size(*x.shape[2:]), mode="bilinear", align_corners=True)
    out = net((resized - 0.5) / 0.5)[:, None]
    if out.shape[2:] != x.shape[2:]:
        out = F.interpolate(out, x.shape[2:], mode="bicubic", align_corners=False)
    return out[:, 0, pad_h:pad_h + height, pad_w:pad_w + width]


def zoe_metric_depth(img: np.ndarray, models: AnnotatorModels | None = None) -> np.ndarray:
    """HxW float32 metres: the mean of the prediction and that of the mirrored image (mirrored back)."""
    models = default_models() if models is None else models
    net = models.get(ZOE)
    with models.running(net) as device:
        x = image_tensor(img, device) / 255.0
        depth = (_metric(net, x) + _metric(net, x.flip(3)).flip(2)) / 2
        return depth[0].float().cpu().numpy()


def depth_to_uint8(depth: np.ndarray) -> np.ndarray:
    """Near = bright: 2nd percentile -> 255, 85th -> 0, clipped (a flat prediction gives black)."""
    near, far = np.percentile(depth, NEAR_PERCENTILE), np.percentile(depth, FAR_PERCENTILE)
    if not far > near:
        return np.zeros(depth.shape, np.uint8)
    return ((1.0 - (depth - near) / (far - near)) * 255.0).clip(0, 255).astype(np.uint8)


def depth_zoe(image: np.ndarray, resolution: float, models: AnnotatorModels | None = None) -> np.ndarray:
    img = resize_short_side(hwc3(image), resolution)
    return gray_to_rgb(apply_padded(img, lambda x: depth_to_uint8(zoe_metric_depth(x, models))))
