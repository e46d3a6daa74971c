"""Random IP-Adapter state dicts in the published key layout (tencent-ailab / h94 files), at any width.

`ip_adapter_state_dict(variant, ...)` gives `image_proj.*` and `ip_adapter.{2n+1}.to_k_ip/to_v_ip.weight`
keys with the published shapes' structure: base/light (proj, norm), plus (a Resampler: latents, proj_in,
4 x [perceiver attention, feed-forward], proj_out, norm_out), full-face (proj.0/2/3), FaceID (proj.0/2,
norm), FaceID plus (the same plus perceiver_resampler.*), InstantID (a Resampler over one 512-wide face
embedding). Every tensor is drawn (LayerNorm weights around 1), so no output is trivially zero.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

FACE = 512


def _resampler(prefix: str, *, dim: int, depth: int, heads: int, embedding_dim: int, output_dim: int,
               queries: int | None, ff_mult: int = 4) -> dict[str, tuple[int, ...]]:
    inner = heads * 64
    shapes = {f"{prefix}proj_in.weight": (dim, embedding_dim), f"{prefix}proj_in.bias": (dim,),
              f"{prefix}proj_out.weight": (output_dim, dim), f"{prefix}proj_out.bias": (output_dim,),
              f"{prefix}norm_out.weight": (output_dim,), f"{prefix}norm_out.bias": (output_dim,)}
    if queries is not None:
        shapes[f"{prefix}latents"] = (1, queries, dim)
    for i in range(depth):
        p = f"{prefix}layers.{i}."
        shapes.update({
            f"{p}0.norm1.weight": (dim,), f"{p}0.norm1.bias": (dim,), f"{p}0.norm2.weight": (dim,),
            f"{p}0.norm2.bias": (dim,), f"{p}0.to_q.weight": (inner, dim), f"{p}0.to_kv.weight": (2 * inner, dim),
            f"{p}0.to_out.weight": (dim, inner), f"{p}1.0.weight": (dim,), f"{p}1.0.bias": (dim,),
            f"{p}1.1.weight": (dim * ff_mult, dim), f"{p}1.3.weight": (dim, dim * ff_mult)})
    return shapes


def projection_shapes(variant: str, *, cross: int, clip: int, tokens: int = 4, dim: int = 64,
                      heads: int = 1) -> dict[str, tuple[int, ...]]:
    """`image_proj.*` shapes. clip: image_embeds width (base) or hidden width (plus, full, faceid_plus)."""
    p = "image_proj."
    if variant == "base":
        return {f"{p}proj.weight": (tokens * cross, clip), f"{p}proj.bias": (tokens * cross,),
                f"{p}norm.weight": (cross,), f"{p}norm.bias": (cross,)}
    if variant == "full":
        return {f"{p}proj.0.weight": (clip, clip), f"{p}proj.0.bias": (clip,), f"{p}proj.2.weight": (cross, clip),
                f"{p}proj.2.bias": (cross,), f"{p}proj.3.weight": (cross,), f"{p}proj.3.bias": (cross,)}
    if variant == "plus":
        return _resampler(p, dim=dim, depth=4, heads=heads, embedding_dim=clip, output_dim=cross, queries=tokens)
    if variant == "instant_id":
        return _resampler(p, dim=dim, depth=4, heads=heads, embedding_dim=FACE, output_dim=cross, queries=tokens)
    face = {f"{p}proj.0.weight": (2 * FACE, FACE), f"{p}proj.0.bias": (2 * FACE,),
            f"{p}proj.2.weight": (cross * tokens, 2 * FACE), f"{p}proj.2.bias": (cross * tokens,),
            f"{p}norm.weight": (cross,), f"{p}norm.bias": (cross,)}
    if variant == "faceid":
        return face
    if variant == "faceid_plus":
        return {**face, **_resampler(f"{p}perceiver_resampler.", dim=cross, depth=4, heads=cross // 64,
                                     embedding_dim=clip, output_dim=cross, queries=None)}
    raise ValueError(variant)


def ip_adapter_state_dict(variant: str, *, cross: int, inner: int | list[int], layers: int = 16, clip: int = 32,
                          tokens: int = 4, dim: int = 64, heads: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
    """A whole file's tensors. `inner`: the attention width of each layer (one value for all, or a list)."""
    g = torch.Generator().manual_seed(seed)
    shapes = projection_shapes(variant, cross=cross, clip=clip, tokens=tokens, dim=dim, heads=heads)
    widths = inner if isinstance(inner, list) else [inner] * layers
    for n, width in enumerate(widths):
        for part in ("to_k_ip", "to_v_ip"):
            shapes[f"ip_adapter.{2 * n + 1}.{part}.weight"] = (width, cross)
    state = {}
    for key, shape in shapes.items():
        if key.endswith(("norm.weight", "norm1.weight", "norm2.weight", "norm_out.weight", "proj.3.weight",
                         "1.0.weight")) and len(shape) == 1:
            state[key] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = shape[-1] if len(shape) > 1 else 1
            state[key] = torch.randn(shape, generator=g) / fan_in**0.5
    return state


def save(state: dict[str, torch.Tensor], path: Path) -> Path:
    """`.safetensors` flat, `.bin` as the published nested {"image_proj": ..., "ip_adapter": ...} pickle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".bin":
        nested = {"image_proj": {}, "ip_adapter": {}}
        for k, v in state.items():
            part, rest = k.split(".", 1)
            nested[part][rest] = v
        torch.save(nested, path)
    else:
        save_file(state, str(path))
    return path


def unet_widths(unet) -> list[int]:
    """The attention width of every attn2 of `unet`, in the file's order (what `inner` must be)."""
    from lib_controlnet.kinds.ip_adapter_unit import cross_attention_layers

    return [layer.attn.to_k.out_features for layer in cross_attention_layers(unet)]
