"""The toy base model's layout: SD1.x's checkpoint at reduced widths, and the file the standalone host loads.

Every part keeps the SD1.x single-file key names and depth (`model.diffusion_model.*`: v1-inference.yaml's UNet,
`first_stage_model.*`: its KL autoencoder, `cond_stage_model.transformer.*`: a CLIP ViT-L/14-layout text
model), so `standalone.load_sd_model` reads it like a published SD1.x file; only the widths are smaller, and the
text model has fewer layers. The UNet works on 8x8 latents of 64x64 images, as SD1.x's works on 64x64 latents
of 512x512 ones (the VAE keeps the factor 8). The text model keeps CLIP's whole 49 408-token table, because
the host tokenizes with CLIP's BPE; only the few dozen tokens of the scene captions are ever trained (see
`caption_token_ids`), and the file stores the other rows as zeros.

The file is float16 like the published pruned checkpoints and carries the demo marker (`standalone_demo`
metadata with `"weights": "toy-shapes"` and its native size), so every result made with it says what it is.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from standalone.checkpoint import TEXT_PREFIX, UNET_PREFIX, VAE_PREFIX
from standalone.demo import DEMO_METADATA_KEY
from standalone.embedded import TOY_NOTICE, TOY_WEIGHTS
from standalone.text_encoder import POSITION_IDS, VIT_L14_TEXT
from standalone.unet import V1_INFERENCE, build_unet
from standalone.vae import V1_DDCONFIG, LatentVAE

from ..loop import atomic_write

RESOLUTION = 64  # the images the toy is trained on; latents are 8x8
LATENT_FACTOR = 8
TOY_VERSION = "1"

# v1-inference.yaml's UNet with 32 base channels (SD1.x: 320) and a flatter width profile (x1, x2, x2, x2
# instead of x1, x2, x4, x4): the same blocks, ~3.3 M parameters; cross-attention reads the 64-wide text model.
TOY_UNET = dict(V1_INFERENCE, model_channels=32, channel_mult=[1, 2, 2, 2], context_dim=64)
# CLIP ViT-L/14's text model at 64 wide (one 64-wide head, as the loader assumes) with 4 of its 12 layers
TOY_TEXT = dict(VIT_L14_TEXT, hidden_size=64, intermediate_size=256, num_hidden_layers=4, num_attention_heads=1,
                projection_dim=64)
# v1's KL autoencoder (f=8, 4 latent channels) at 32 base channels (SD1.x: 128), widths x1, x1, x2, x2
TOY_VAE = dict(V1_DDCONFIG, ch=32, ch_mult=[1, 1, 2, 2])
EMBED_DIM = 4
SEEDS = {"unet": 11, "vae": 12, "text": 13}


def _seeded(seed: int, make):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def build_unet_part(seed: int = SEEDS["unet"]) -> nn.Module:
    return _seeded(seed, lambda: build_unet(TOY_UNET))


def build_vae_part(seed: int = SEEDS["vae"]) -> LatentVAE:
    return _seeded(seed, lambda: LatentVAE(TOY_VAE, embed_dim=EMBED_DIM))


def build_text_part(seed: int = SEEDS["text"]) -> nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel

    return _seeded(seed, lambda: CLIPTextModel(CLIPTextConfig(**TOY_TEXT)))


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def caption_token_ids(tokenizer, captions) -> list[int]:
    """The sorted token ids the captions use, with CLIP's start and end tokens (the rows the text model trains)."""
    ids = {tokenizer.convert_tokens_to_ids("<|startoftext|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")}
    for text in captions:
        ids.update(tokenizer(text, add_special_tokens=False)["input_ids"])
    return sorted(ids)


def checkpoint_state_dict(unet: nn.Module, vae: LatentVAE, text: nn.Module,
                          keep_tokens: list[int] | None = None) -> dict[str, torch.Tensor]:
    """The SD1.x single-file state dict (float32); `keep_tokens`: token rows kept, the others zeroed."""
    sd = {UNET_PREFIX + k: v.detach().float().clone() for k, v in unet.state_dict().items()}
    sd.update({VAE_PREFIX + k: v.detach().float().clone() for k, v in vae.state_dict().items()})
    text_sd = {k: v.detach().clone() for k, v in text.state_dict().items() if k != POSITION_IDS}
    if keep_tokens is not None:
        table = text_sd["text_model.embeddings.token_embedding.weight"]
        keep = torch.zeros(table.shape[0], dtype=torch.bool)
        keep[torch.tensor(keep_tokens, dtype=torch.long)] = True
        table[~keep] = 0
    sd.update({TEXT_PREFIX + k: v.float() for k, v in text_sd.items()})
    # published SD1.x files carry the constant position ids (int64); keep the real layout
    sd[TEXT_PREFIX + POSITION_IDS] = torch.arange(TOY_TEXT["max_position_embeddings"])[None]
    return sd


def marker(info: dict | None = None) -> str:
    """The `standalone_demo` metadata value: what the checkpoint is (read by standalone.embedded.demo_label)."""
    return json.dumps({"weights": TOY_WEIGHTS, "version": TOY_VERSION, "resolution": RESOLUTION,
                       "notice": TOY_NOTICE, **(info or {})}, sort_keys=True)


def save_checkpoint(path: Path, state_dict: dict[str, torch.Tensor], info: dict | None = None,
                    dtype: torch.dtype = torch.float16) -> Path:
    """Write the checkpoint atomically; floats in `dtype`, integer tensors (position ids) as they are."""
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in state_dict.items()}
    path = Path(path)
    # one metadata key only: safetensors writes several in a random order, and the bytes must not change
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={DEMO_METADATA_KEY: marker(info)}))
    return path
