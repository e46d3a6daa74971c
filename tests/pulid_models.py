"""Random PuLID IP-Adapter state dicts in the published key layout (huchenlei/ipadapter_pulid
`ip-adapter_pulid_sdxl_fp16.safetensors`: ToTheBeginning/PuLID's pulid_v1.bin in IP-Adapter names), at any width.

`image_proj.*` is PuLID's IDEncoder: body.{0,3,6} Linear, body.{1,4} LayerNorm (LeakyReLU at 2 and 5); for each
of the five EVA-CLIP hidden states mapping_i.* and mapping_patch_i.* (Linear 0, LayerNorm 1, Linear 3, LayerNorm
4, Linear 6). `ip_adapter.{2n+1}.to_k_ip/to_v_ip.weight`: one pair per attn2 of the UNet. Published widths:
input 1280 (512 + 768), body 1024 / 1024 -> 5 x 2048, mappings 1024 -> 1024 -> 2048.
"""

from __future__ import annotations

import math

import torch

FACE = 512
PUBLISHED_PROJ = dict(context=2048, vit_dim=768, vit_width=1024, body=(1024, 1024), mapping_hidden=1024)


def projection_shapes(*, context: int, vit_dim: int, vit_width: int, body: tuple[int, int], mapping_hidden: int,
                      id_tokens: int = 5, layers: int = 5) -> dict[str, tuple[int, ...]]:
    p = "image_proj."
    h1, h2 = body
    shapes = {}

    def linear(name, cout, cin):
        shapes[f"{p}{name}.weight"], shapes[f"{p}{name}.bias"] = (cout, cin), (cout,)

    def norm(name, width):
        shapes[f"{p}{name}.weight"], shapes[f"{p}{name}.bias"] = (width,), (width,)

    linear("body.0", h1, FACE + vit_dim)
    norm("body.1", h1)
    linear("body.3", h2, h1)
    norm("body.4", h2)
    linear("body.6", context * id_tokens, h2)
    for i in range(layers):
        for name in (f"mapping_{i}", f"mapping_patch_{i}"):
            linear(f"{name}.0", mapping_hidden, vit_width)
            norm(f"{name}.1", mapping_hidden)
            linear(f"{name}.3", mapping_hidden, mapping_hidden)
            norm(f"{name}.4", mapping_hidden)
            linear(f"{name}.6", context, mapping_hidden)
    return shapes


def pulid_state_dict(*, inner: list[int], context: int = 64, vit_dim: int = 32, vit_width: int = 64,
                     body: tuple[int, int] = (48, 96), mapping_hidden: int = 40, seed: int = 0
                     ) -> dict[str, torch.Tensor]:
    """A whole file's tensors; `inner`: the attention width of each attn2, in the file's order."""
    g = torch.Generator().manual_seed(seed)
    shapes = projection_shapes(context=context, vit_dim=vit_dim, vit_width=vit_width, body=body,
                               mapping_hidden=mapping_hidden)
    for n, width in enumerate(inner):
        for part in ("to_k_ip", "to_v_ip"):
            shapes[f"ip_adapter.{2 * n + 1}.{part}.weight"] = (width, context)
    state = {}
    for key, shape in shapes.items():
        if len(shape) == 1 and key.endswith(("1.weight", "4.weight")):  # LayerNorm weights around 1
            state[key] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = shape[-1] if len(shape) > 1 else 1
            state[key] = torch.randn(shape, generator=g) / fan_in**0.5
    return state


def pulid_inputs(*, vit_dim: int = 32, vit_width: int = 64, tokens: int = 5, seed: int = 0) -> dict:
    """What ip-adapter_pulid gives for one image, at these widths (the published: 768, 1024, 577)."""
    g = torch.Generator().manual_seed(seed)
    vit = torch.randn(1, vit_dim, generator=g)
    return {"id_ante_embedding": torch.randn(1, FACE, generator=g) * 20,
            "id_cond_vit": vit / vit.norm(dim=1, keepdim=True),
            "id_vit_hidden": torch.randn(5, 1, tokens, vit_width, generator=g)}


# --- the preprocessor's files, for end-to-end runs ---------------------------------------------------------
def designed_retinaface_state() -> dict[str, torch.Tensor]:
    """detection_Resnet50_Final.pth's keys with every weight zero but the stride-32 heads' biases: a face at
    every stride-32 prior (score 1 - 1e-8), its five landmarks facexlib's template scaled to the prior's box
    (so NMS, the centre face and the alignment all have something real to do); BatchNorm variances 1."""
    from annotator.neural import facexlib_faces as fx

    state = {k: torch.ones_like(v) if k.endswith("running_var") else torch.zeros_like(v)
             for k, v in fx.RetinaFace().state_dict().items()}
    state["ClassHead.2.conv1x1.bias"] = torch.tensor([-9.0, 9.0, -9.0, 9.0])
    # per anchor (sizes 256 and 512): landmark = prior centre + offset * 0.1 * size; a face as big as the prior
    offsets = torch.from_numpy((fx.FACE_TEMPLATE - 256.0) / 512.0 / 0.1).float().reshape(-1)
    state["LandmarkHead.2.conv1x1.bias"] = torch.cat([offsets, offsets])
    return state


def random_bisenet_state(seed: int = 0) -> dict[str, torch.Tensor]:
    from annotator.neural import facexlib_faces as fx

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in fx.BiSeNet().state_dict().items():
        if k.endswith("running_var"):
            v = torch.rand(v.shape, generator=g) + 0.5
        elif v.is_floating_point():
            v = v + torch.randn(v.shape, generator=g) * 0.05
        state[k] = v
    return state


EVA_TINY = dict(image_size=42, patch=14, width=64, depth=21, mlp=170, out=32)  # five hidden states, 10 tokens


def eva_clip_file_state(seed: int = 0, **config) -> dict[str, torch.Tensor]:
    """EVA02_CLIP_L_336_psz14_s6B.pt's structure (the whole CLIP: `visual.*` with its rotary buffers, a text
    part, logit_scale) around a random tower of `config` (EVA_TINY by default)."""
    from annotator.neural import eva_clip as ev

    torch.manual_seed(seed)
    tower = ev.EvaVisionTower(**(config or EVA_TINY))
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in tower.state_dict().items():
        if v.dim() < 2:  # LayerNorms and biases: their init plus noise
            state[f"visual.{k}"] = v + torch.randn(v.shape, generator=g) * 0.05
        else:
            state[f"visual.{k}"] = torch.randn(v.shape, generator=g) / math.prod(v.shape[1:]) ** 0.5
    cos, sin = ev.rope_tables(tower.grid, ev.HEAD_WIDTH)
    state["visual.rope.freqs_cos"], state["visual.rope.freqs_sin"] = cos, sin
    for i in range(len(tower.blocks)):
        state[f"visual.blocks.{i}.attn.rope.freqs_cos"], state[f"visual.blocks.{i}.attn.rope.freqs_sin"] = cos, sin
    state["text.token_embedding.weight"] = torch.zeros(16, 8)
    state["logit_scale"] = torch.tensor(4.6052)
    return state
