"""SD1.x's text encoder: `transformers.CLIPTextModel` (ViT-L/14 text tower) with the checkpoint's weights.

The checkpoint stores the encoder under `cond_stage_model.transformer.` with Hugging Face's own names
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
    # position_ids is a non-persistent buffer: not in the file's tensors we load, still on meta; rebuild it.
    embeddings = model.text_model.embeddings
    embeddings.register_buffer(
        "position_ids", torch.arange(config.max_position_embeddings).expand((1, -1)), persistent=False
    )
    return model.eval().requires_grad_(False)
