"""IP-Adapter networks in the published key layout (tencent-ailab's `image_proj.*` / `ip_adapter.*`).

An IP-Adapter file holds two parts:

- `image_proj.*`: turns what the image encoder gave into extra context tokens. Which network it is follows
  from the keys and shapes (`ip_adapter_arch`):

  | projection    | keys                                        | input                               | tokens |
  |---------------|---------------------------------------------|-------------------------------------|--------|
  | `linear`      | proj, norm                                  | CLIP `image_embeds`                 | 4 (16) |
  | `mlp`         | proj.0, proj.2, proj.3 (full-face)          | CLIP penultimate hidden states      | 257    |
  | `resampler`   | latents, proj_in, layers, proj_out, norm_out | CLIP hidden states (plus, plus-face,  | 16     |
  |               |                                             | composition); a face embedding (InstantID) |    |
  | `faceid`      | proj.0, proj.2, norm                        | an insightface embedding (512)      | 4; 16 portrait |
  | `faceid_plus` | proj.0, proj.2, norm, perceiver_resampler.* | insightface embedding + CLIP hidden | 4 |
  | `pulid`       | body.0/1/3/4/6, mapping_i.*, mapping_patch_i.* | antelopev2 embedding + EVA-CLIP's  | 5 + 5 |
  |               | (PuLID's IDEncoder)                          | embedding and five hidden states    |        |

- `ip_adapter.{2n+1}.to_k_ip/to_v_ip.weight`: one key/value projection pair per cross-attention (attn2)
  of the UNet, numbered in diffusers' processor order (down blocks, up blocks, then the middle block; the
  even numbers were the self-attentions, which have no weights).

Perceiver attention as published: q from the latents, k/v from [features, latents], 64-wide heads.

PuLID's published SDXL file (huchenlei/ipadapter_pulid `ip-adapter_pulid_sdxl_fp16.safetensors`, converted
from ToTheBeginning/PuLID's pulid_v1.bin) uses the same layout: `image_proj.*` is the IDEncoder
(`id_adapter.*` upstream) and `ip_adapter.{2n+1}.to_k_ip/to_v_ip` its `id_adapter_attn_layers.{2n+1}.id_to_k/
id_to_v`, numbered in the same diffusers processor order.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ModelFileError

PROJ = "image_proj."
LAYERS = "ip_adapter."
HEAD_DIM = 64  # the Resampler's dim_head in every published file
FACE_EMBED_DIM = 512  # insightface's ArcFace embedding (FaceID, InstantID)

Shapes = Mapping[str, tuple[int, ...]]


@dataclass(frozen=True)
class IPAdapterArch:
    projection: str  # "linear", "mlp", "resampler", "faceid", "faceid_plus"
    cross_dim: int  # the width of the tokens (the UNet's context width)
    tokens: int  # extra context tokens per image (mlp: one per CLIP hidden state)
    input_dim: int  # CLIP projection / hidden width, or the face embedding width
    inner_dims: tuple[int, ...]  # per cross-attention the file has key/value weights for: to_k_ip's output width

    @property
    def num_layers(self) -> int:
        return len(self.inner_dims)

    # Resampler / perceiver (resampler, faceid_plus)
    dim: int = 0
    depth: int = 0
    heads: int = 0
    ff_mult: int = 4
    clip_dim: int = 0  # faceid_plus: the CLIP hidden width its perceiver reads; pulid: EVA-CLIP's width
    hidden: int = 0  # faceid / faceid_plus: the first MLP layer's width
    # pulid: the body's two hidden widths, the tokens it makes, how many hidden states it maps, and the width
    # of the mappings' hidden layers
    body: tuple[int, ...] = ()
    id_tokens: int = 0
    vit_layers: int = 0
    mapping_hidden: int = 0

    @property
    def takes_face(self) -> bool:
        """Its input is a face embedding (FaceID, FaceID plus, InstantID, PuLID), not (only) a CLIP one."""
        return self.projection in ("faceid", "faceid_plus", "pulid") or (
            self.projection == "resampler" and self.input_dim == FACE_EMBED_DIM)

    @property
    def takes_hidden_states(self) -> bool:
        """It reads CLIP's penultimate hidden states (plus, full-face, FaceID plus), not `image_embeds`."""
        return self.projection in ("mlp", "faceid_plus") or (self.projection == "resampler" and not self.takes_face)

    @property
    def variant(self) -> str:
        """What a user would call it: base (or light), plus, full, faceid, faceid_plus, instant_id, pulid."""
        if self.projection == "resampler":
            return "instant_id" if self.takes_face else "plus"
        return {"linear": "base", "mlp": "full"}.get(self.projection, self.projection)


def _layer_numbers(shapes: Shapes) -> list[int]:
    numbers = set()
    for key in shapes:
        m = re.fullmatch(r"ip_adapter\.(\d+)\.to_k_ip\.weight", key)
        if m:
            numbers.add(int(m.group(1)))
    return sorted(numbers)


def _count(shapes: Shapes, pattern: str) -> int:
    return len({m.group(1) for k in shapes if (m := re.fullmatch(pattern, k))})


def ip_adapter_arch(shapes: Shapes) -> IPAdapterArch:
    """The architecture the keys and shapes describe (never the file name)."""
    numbers = _layer_numbers(shapes)
    if not numbers:
        raise ModelFileError("an IP-Adapter file needs ip_adapter.N.to_k_ip.weight keys")
    for n in numbers:
        for part in ("to_k_ip", "to_v_ip"):
            if f"{LAYERS}{n}.{part}.weight" not in shapes:
                raise ModelFileError(f"IP-Adapter layer {n} has no {part}.weight")
    _, cross = shapes[f"{LAYERS}{numbers[0]}.to_k_ip.weight"]
    common = dict(inner_dims=tuple(shapes[f"{LAYERS}{n}.to_k_ip.weight"][0] for n in numbers))

    def has(name: str) -> bool:
        return PROJ + name in shapes

    def shape(name: str) -> tuple[int, ...]:
        return shapes[PROJ + name]

    if has("body.0.weight") or has("mapping_0.0.weight"):
        return _pulid_arch(shapes, common)
    if has("latents"):
        _, queries, dim = shape("latents")
        heads = shape("layers.0.0.to_q.weight")[0] // HEAD_DIM
        return IPAdapterArch("resampler", cross_dim=shape("proj_out.weight")[0], tokens=queries,
                             input_dim=shape("proj_in.weight")[1], dim=dim,
                             depth=_count(shapes, r"image_proj\.layers\.(\d+)\.0\.to_q\.weight"), heads=heads,
                             ff_mult=shape("layers.0.1.1.weight")[0] // dim, **common)
    if has("perceiver_resampler.proj_in.weight"):
        width = shape("norm.weight")[0]
        dim, clip_dim = shape("perceiver_resampler.proj_in.weight")
        return IPAdapterArch(
            "faceid_plus", cross_dim=width, tokens=shape("proj.2.weight")[0] // width,
            input_dim=shape("proj.0.weight")[1], hidden=shape("proj.0.weight")[0], dim=dim, clip_dim=clip_dim,
            depth=_count(shapes, r"image_proj\.perceiver_resampler\.layers\.(\d+)\.0\.to_q\.weight"),
            heads=shape("perceiver_resampler.layers.0.0.to_q.weight")[0] // HEAD_DIM,
            ff_mult=shape("perceiver_resampler.layers.0.1.1.weight")[0] // dim, **common)
    if has("proj.3.weight"):
        clip = shape("proj.0.weight")[1]
        # one token per CLIP hidden state (257 for ViT-H/14 at 224 px)
        return IPAdapterArch("mlp", cross_dim=shape("proj.3.weight")[0], tokens=0, input_dim=clip, **common)
    if has("proj.0.weight") and has("proj.2.weight") and has("norm.weight"):
        width = shape("norm.weight")[0]
        return IPAdapterArch("faceid", cross_dim=width, tokens=shape("proj.2.weight")[0] // width,
                             input_dim=shape("proj.0.weight")[1], hidden=shape("proj.0.weight")[0], **common)
    if has("proj.weight") and has("norm.weight"):
        width = shape("norm.weight")[0]
        out, clip = shape("proj.weight")
        if out % width:
            raise ModelFileError(f"image_proj.proj.weight {out} outputs are no multiple of the token width {width}")
        return IPAdapterArch("linear", cross_dim=width, tokens=out // width, input_dim=clip, **common)
    sample = ", ".join(sorted(k for k in shapes if k.startswith(PROJ))[:6])
    raise ModelFileError(f"unrecognised IP-Adapter image projection (keys: {sample})")


def _pulid_arch(shapes: Shapes, common: dict) -> IPAdapterArch:
    """PuLID's IDEncoder: body.{0,3,6} Linear with LayerNorms body.{1,4}; mapping_i / mapping_patch_i for each
    EVA-CLIP hidden state (Linear, LayerNorm, LeakyReLU twice, then a Linear to the context width)."""
    def shape(name: str) -> tuple[int, ...]:
        key = PROJ + name
        if key not in shapes:
            raise ModelFileError(f"a PuLID file needs {key}")
        return shapes[key]

    layers = _count(shapes, r"image_proj\.mapping_(\d+)\.0\.weight")
    hidden1, width = shape("body.0.weight")
    hidden2 = shape("body.3.weight")[0]
    out = shape("body.6.weight")[0]
    mapping_hidden, vit = shape("mapping_0.0.weight")
    context = shape("mapping_0.6.weight")[0]
    if out % context or not layers:
        raise ModelFileError(f"PuLID's image_proj.body.6 makes {out} values, no multiple of the {context}-wide "
                             "tokens its mappings make")
    return IPAdapterArch("pulid", cross_dim=context, tokens=out // context + layers, input_dim=width,
                         clip_dim=vit, body=(hidden1, hidden2), id_tokens=out // context, vit_layers=layers,
                         mapping_hidden=mapping_hidden, **common)


# --- the projection networks ---------------------------------------------------------------------------
def feed_forward(dim: int, mult: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * mult, bias=False), nn.GELU(),
                         nn.Linear(dim * mult, dim, bias=False))


class PerceiverAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        inner = heads * HEAD_DIM
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        x, latents = self.norm1(x), self.norm2(latents)
        b, n, _ = latents.shape

        def split(t):
            return t.view(b, t.shape[1], self.heads, -1).transpose(1, 2)

        q = split(self.to_q(latents))
        k, v = (split(t) for t in self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1))
        scale = 1 / math.sqrt(math.sqrt(HEAD_DIM))  # split over q and k, as published (fp16-safe)
        weights = torch.softmax(((q * scale) @ (k * scale).transpose(-2, -1)).float(), dim=-1).to(q.dtype)
        return self.to_out((weights @ v).transpose(1, 2).reshape(b, n, -1))


class Perceiver(nn.Module):
    """proj_in -> depth x (attention, feed-forward), residual -> proj_out -> norm_out."""

    def __init__(self, *, dim: int, depth: int, heads: int, embedding_dim: int, output_dim: int, ff_mult: int):
        super().__init__()
        self.proj_in = nn.Linear(embedding_dim, dim)
        self.proj_out = nn.Linear(dim, output_dim)
        self.norm_out = nn.LayerNorm(output_dim)
        self.layers = nn.ModuleList(nn.ModuleList([PerceiverAttention(dim, heads), feed_forward(dim, ff_mult)])
                                    for _ in range(depth))

    def resample(self, latents: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        x = self.proj_in(x)
        for attention, ff in self.layers:
            latents = attention(x, latents) + latents
            latents = ff(latents) + latents
        return self.norm_out(self.proj_out(latents))


class Resampler(Perceiver):
    """plus / plus-face / composition (CLIP hidden states in) and InstantID (a face embedding in)."""

    def __init__(self, arch: IPAdapterArch):
        super().__init__(dim=arch.dim, depth=arch.depth, heads=arch.heads, embedding_dim=arch.input_dim,
                         output_dim=arch.cross_dim, ff_mult=arch.ff_mult)
        self.latents = nn.Parameter(torch.zeros(1, arch.tokens, arch.dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resample(self.latents.expand(x.shape[0], -1, -1), x)


class LinearProjection(nn.Module):
    """base, light, vit-G: image_embeds -> tokens x width, LayerNorm per token."""

    def __init__(self, arch: IPAdapterArch):
        super().__init__()
        self.width, self.tokens = arch.cross_dim, arch.tokens
        self.proj = nn.Linear(arch.input_dim, arch.tokens * arch.cross_dim)
        self.norm = nn.LayerNorm(arch.cross_dim)

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(embeds).reshape(-1, self.tokens, self.width))


class MLPProjection(nn.Module):
    """full-face: every CLIP hidden state becomes a token."""

    def __init__(self, arch: IPAdapterArch):
        super().__init__()
        c = arch.input_dim
        self.proj = nn.Sequential(nn.Linear(c, c), nn.GELU(), nn.Linear(c, arch.cross_dim),
                                  nn.LayerNorm(arch.cross_dim))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(hidden)


class FaceIDProjection(nn.Module):
    """FaceID (4 tokens) and FaceID portrait (16): face embedding -> MLP -> tokens, LayerNorm per token."""

    def __init__(self, arch: IPAdapterArch):
        super().__init__()
        self.width, self.tokens = arch.cross_dim, arch.tokens
        self.proj = nn.Sequential(nn.Linear(arch.input_dim, arch.hidden), nn.GELU(),
                                  nn.Linear(arch.hidden, arch.cross_dim * arch.tokens))
        self.norm = nn.LayerNorm(arch.cross_dim)

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(face).reshape(-1, self.tokens, self.width))


class FaceIDPlusProjection(FaceIDProjection):
    """FaceID plus (v2: `shortcut`): the face tokens, refined by a perceiver over CLIP's hidden states."""

    def __init__(self, arch: IPAdapterArch):
        super().__init__(arch)
        self.perceiver_resampler = Perceiver(dim=arch.dim, depth=arch.depth, heads=arch.heads,
                                             embedding_dim=arch.clip_dim, output_dim=arch.cross_dim,
                                             ff_mult=arch.ff_mult)

    def forward(self, face: torch.Tensor, hidden: torch.Tensor, shortcut: bool = False,
                scale: float = 1.0) -> torch.Tensor:
        x = super().forward(face)
        out = self.perceiver_resampler.resample(x, hidden)
        return x + scale * out if shortcut else out


def _mapping(width: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.LeakyReLU(), nn.Linear(hidden, hidden),
                         nn.LayerNorm(hidden), nn.LeakyReLU(), nn.Linear(hidden, out))


class PuLIDEncoder(nn.Module):
    """PuLID's IDEncoder: [antelopev2 embedding, EVA-CLIP embedding] -> 5 tokens through `body`; each EVA-CLIP
    hidden state -> one token: its class token through mapping_i plus the mean over its patch tokens of
    mapping_patch_i. The ten tokens in that order."""

    def __init__(self, arch: IPAdapterArch):
        super().__init__()
        h1, h2 = arch.body
        self.width, self.id_tokens = arch.cross_dim, arch.id_tokens
        self.body = nn.Sequential(nn.Linear(arch.input_dim, h1), nn.LayerNorm(h1), nn.LeakyReLU(),
                                  nn.Linear(h1, h2), nn.LayerNorm(h2), nn.LeakyReLU(),
                                  nn.Linear(h2, arch.cross_dim * arch.id_tokens))
        for i in range(arch.vit_layers):
            setattr(self, f"mapping_{i}", _mapping(arch.clip_dim, arch.mapping_hidden, arch.cross_dim))
            setattr(self, f"mapping_patch_{i}", _mapping(arch.clip_dim, arch.mapping_hidden, arch.cross_dim))
        self.vit_layers = arch.vit_layers

    def forward(self, id_cond: torch.Tensor, vit_hidden: Sequence[torch.Tensor]) -> torch.Tensor:
        tokens = [self.body(id_cond).reshape(-1, self.id_tokens, self.width)]
        for i, state in enumerate(vit_hidden):
            cls = getattr(self, f"mapping_{i}")(state[:, :1])
            patches = getattr(self, f"mapping_patch_{i}")(state[:, 1:]).mean(dim=1, keepdim=True)
            tokens.append(cls + patches)
        return torch.cat(tokens, dim=1)


PROJECTIONS = {"linear": LinearProjection, "mlp": MLPProjection, "resampler": Resampler,
               "faceid": FaceIDProjection, "faceid_plus": FaceIDPlusProjection, "pulid": PuLIDEncoder}


class IPLayers(nn.Module):
    """The per-cross-attention key/value projections of the image tokens, in the file's order."""

    def __init__(self, arch: IPAdapterArch):
        super().__init__()
        self.to_k = nn.ModuleList(nn.Linear(arch.cross_dim, inner, bias=False) for inner in arch.inner_dims)
        self.to_v = nn.ModuleList(nn.Linear(arch.cross_dim, inner, bias=False) for inner in arch.inner_dims)


class IPAdapterNet(nn.Module):
    def __init__(self, arch: IPAdapterArch):
        super().__init__()
        self.arch = arch
        self.image_proj = PROJECTIONS[arch.projection](arch)
        self.ip_layers = IPLayers(arch)

    def load_published(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load `image_proj.*` / `ip_adapter.*` tensors; every key must be used and every weight given."""
        numbers = _layer_numbers({k: () for k in state})
        own = {}
        for k, v in state.items():
            if k.startswith(PROJ):
                own["image_proj." + k[len(PROJ):]] = v
        for i, n in enumerate(numbers):
            own[f"ip_layers.to_k.{i}.weight"] = state[f"{LAYERS}{n}.to_k_ip.weight"]
            own[f"ip_layers.to_v.{i}.weight"] = state[f"{LAYERS}{n}.to_v_ip.weight"]
        extra = sorted(k for k in state if not k.startswith((PROJ, LAYERS)))
        unused = sorted(k for k in state
                        if k.startswith(LAYERS) and not k.endswith(("to_k_ip.weight", "to_v_ip.weight")))
        if extra or unused:
            raise ModelFileError(f"unexpected keys in an IP-Adapter file: {', '.join((extra + unused)[:5])}")
        missing, unexpected = self.load_state_dict({k: v.float() for k, v in own.items()}, strict=False)
        if missing or unexpected:
            raise ModelFileError(f"IP-Adapter keys do not fit its projection: missing {missing[:5]}, "
                                 f"unexpected {unexpected[:5]}")

    def key_value(self, layer: int, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.ip_layers.to_k[layer], self.ip_layers.to_v[layer]
        tokens = tokens.to(k.weight.device, k.weight.dtype)
        return F.linear(tokens, k.weight), F.linear(tokens, v.weight)
