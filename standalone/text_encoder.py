"""The text encoders as `transformers` CLIP text models with the checkpoint's weights.

SD1.x and SDXL's first encoder: CLIP ViT-L/14 (`CLIPTextModel`); SD2.x: OpenCLIP ViT-H/14; SDXL's second:
OpenCLIP ViT-bigG/14 with its text projection (`CLIPTextModelWithProjection`), both renamed from open_clip's
keys below.

CLIP ViT-L/14 is stored (SD1.x: `cond_stage_model.transformer.`, SDXL: `conditioner.embedders.0.transformer.`)
with Hugging Face's own names
(`text_model.embeddings...`, `text_model.encoder.layers.N...`), so the mapping is the identity after the
prefix; very old files lack the `text_model.` level, which is added back. `text_model.embeddings.position_ids`
is a constant (0..76), not a weight: it is checked and consumed, never loaded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from lib_controlnet.errors import ModelFileError

from .clip_vocab import VOCAB_SIZE
from .unet import load_exact

POSITION_IDS = "text_model.embeddings.position_ids"

# openai/clip-vit-large-patch14's text tower; widths and depth are read from the file, the rest is fixed.
VIT_L14_TEXT = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    projection_dim=768,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
)


def normalise_text_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys after `cond_stage_model.transformer.`, with the `text_model.` level that old files omit."""
    return {k if k.startswith("text_model.") else "text_model." + k: v for k, v in state_dict.items()}


def text_config_from_shapes(shapes: Mapping[str, tuple[int, ...]]) -> dict:
    try:
        vocab, hidden = shapes["text_model.embeddings.token_embedding.weight"]
        positions = shapes["text_model.embeddings.position_embedding.weight"][0]
        intermediate = shapes["text_model.encoder.layers.0.mlp.fc1.weight"][0]
    except KeyError as e:
        raise ModelFileError(f"the text encoder is not a CLIP text model (missing {e})") from None
    layers = len({m.group(1) for k in shapes if (m := re.match(r"text_model\.encoder\.layers\.(\d+)\.", k))})
    return {
        **VIT_L14_TEXT,
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": max(1, hidden // 64),  # ViT-L/14: 64-wide heads
        "max_position_embeddings": positions,
        "projection_dim": hidden,
    }


def map_text_weights(state_dict: Mapping[str, torch.Tensor], expected: set[str]) -> tuple[dict, set[str]]:
    """(weights to load, keys consumed without loading). Raises if any key is neither, or a weight is missing."""
    sd = normalise_text_keys(state_dict)
    consumed = set()
    if POSITION_IDS in sd:
        ids = sd.pop(POSITION_IDS)
        # some merged checkpoints carry float position ids that drifted; A1111 rounds them, we only accept exact
        if not torch.equal(ids.flatten().round().long(), torch.arange(ids.numel())):
            raise ModelFileError(f"{POSITION_IDS} is not 0..{ids.numel() - 1}")
        consumed.add(POSITION_IDS)
    leftover = sorted(set(sd) - expected)
    missing = sorted(expected - set(sd))
    if leftover or missing:
        raise ModelFileError(f"text encoder keys do not match CLIPTextModel: unexpected {leftover[:5]}, "
                             f"missing {missing[:5]}")
    return sd, consumed


def load_text_encoder(state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype = torch.float32):
    from transformers import CLIPTextConfig, CLIPTextModel

    shapes = {k: tuple(v.shape) for k, v in normalise_text_keys(state_dict).items()}
    config = CLIPTextConfig(**text_config_from_shapes(shapes))
    with torch.device("meta"):
        model = CLIPTextModel(config)
    weights, _ = map_text_weights(state_dict, set(model.state_dict()))
    load_exact(model, weights, dtype, "text encoder")
    _rebuild_position_ids(model, config)
    return model.eval().requires_grad_(False)


# --- OpenCLIP text towers (SD2.x's ViT-H, SDXL's ViT-bigG) --------------------------------------------------
# The checkpoints keep open_clip's own names (`transformer.resblocks.N.attn.in_proj_weight`, `ln_final`,
# `text_projection` as a [width, dim] matrix used as x @ P). They are renamed to transformers' CLIP names, the
# fused q/k/v projection split in three, the projection transposed into a Linear; `logit_scale` (a training
# constant) is consumed. Hugging Face's conversion of the laion models does the same.
OPEN_CLIP_LAYER_NAMES = {
    "ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
}
OPEN_CLIP_CONSUMED = ("logit_scale", "attn_mask")
_RESBLOCK = re.compile(r"transformer\.resblocks\.(\d+)\.(.+)\.(weight|bias)$")


def open_clip_to_transformers(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict, set[str]]:
    """(CLIPTextModel[WithProjection] weights, keys consumed without loading); unknown keys raise."""
    out: dict[str, torch.Tensor] = {}
    consumed, unknown = set(), []
    for key, value in state_dict.items():
        if key in OPEN_CLIP_CONSUMED:
            consumed.add(key)
        elif key == "token_embedding.weight":
            out["text_model.embeddings.token_embedding.weight"] = value
        elif key == "positional_embedding":
            out["text_model.embeddings.position_embedding.weight"] = value
        elif key.startswith("ln_final."):
            out["text_model.final_layer_norm." + key.split(".")[-1]] = value
        elif key == "text_projection":
            out["text_projection.weight"] = value.t().contiguous()
        elif m := _RESBLOCK.match(key):
            layer, name, kind = m.groups()
            prefix = f"text_model.encoder.layers.{layer}."
            if name in OPEN_CLIP_LAYER_NAMES:
                out[f"{prefix}{OPEN_CLIP_LAYER_NAMES[name]}.{kind}"] = value
            else:
                unknown.append(key)
        elif m := re.match(r"transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$", key):
            layer, kind = m.groups()
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                out[f"text_model.encoder.layers.{layer}.self_attn.{name}.{kind}"] = part.contiguous()
        else:
            unknown.append(key)
    if unknown:
        raise ModelFileError(f"the OpenCLIP text encoder has keys this host does not know: {sorted(unknown)[:5]}")
    return out, consumed


def open_clip_config_from_shapes(shapes: Mapping[str, tuple[int, ...]]) -> dict:
    """transformers' CLIPTextConfig for an OpenCLIP text tower (ViT-H/14: 1024 wide, 24 layers; bigG/14: 1280, 32)."""
    try:
        vocab, hidden = shapes["token_embedding.weight"]
        positions = shapes["positional_embedding"][0]
        intermediate = shapes["transformer.resblocks.0.mlp.c_fc.weight"][0]
    except KeyError as e:
        raise ModelFileError(f"the text encoder is not an OpenCLIP text tower (missing {e})") from None
    layers = len({m.group(1) for k in shapes if (m := re.match(r"transformer\.resblocks\.(\d+)\.", k))})
    projection = shapes.get("text_projection", (hidden, hidden))[1]
    return {
        **VIT_L14_TEXT,
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": max(1, hidden // 64),  # open_clip's text towers: 64-wide heads
        "max_position_embeddings": positions,
        "projection_dim": projection,
        "hidden_act": "gelu",  # open_clip's default (the OpenAI models use quick_gelu)
    }


def load_open_clip_text_encoder(state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype = torch.float32, *,
                                with_projection: bool = False):
    """CLIPTextModel (SD2.x: no projection used) or CLIPTextModelWithProjection (SDXL's pooled output)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    config = CLIPTextConfig(**open_clip_config_from_shapes(shapes))
    weights, _ = open_clip_to_transformers(state_dict)
    if not with_projection:
        weights.pop("text_projection.weight", None)
    with torch.device("meta"):
        model = (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)
    load_exact(model, weights, dtype, "text encoder")
    _rebuild_position_ids(model, config)
    return model.eval().requires_grad_(False)


def _rebuild_position_ids(model, config) -> None:
    # position_ids is a non-persistent buffer: not among the file's tensors we load, still on meta; rebuild it.
    model.text_model.embeddings.register_buffer(
        "position_ids", torch.arange(config.max_position_embeddings).expand((1, -1)), persistent=False
    )
