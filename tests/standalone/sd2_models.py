"""Tiny random SD2.x checkpoints in the published layout (v2-inference(-v).yaml at reduced widths).

`model.diffusion_model.*`: ldm's UNetModel with SD2's settings (64-wide heads, linear proj_in/out);
`cond_stage_model.model.*`: OpenCLIP ViT-H/14's 24 text layers at width 64, in open_clip's names (with
`text_projection` and `logit_scale`, as the published files keep them); `first_stage_model.*`: the KL VAE.
A 768-v file gets A1111's way of saying so: a `<name>.yaml` beside it with `parameterization: "v"`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from standalone.checkpoint import SD2_TEXT_PREFIX, UNET_PREFIX, VAE_PREFIX
from standalone.demo import DEMO_VAE, _calibrate_latent_scale, _save, _seeded
from standalone.demo_sdxl import transformers_to_open_clip
from standalone.text_encoder import VIT_L14_TEXT
from standalone.unet import build_unet
from standalone.vae import LatentVAE

SD2_UNET = dict(image_size=32, in_channels=4, out_channels=4, model_channels=64, attention_resolutions=[4, 2, 1],
                num_res_blocks=2, channel_mult=[1, 1, 2, 2], num_heads=-1, num_head_channels=64,
                use_spatial_transformer=True, use_linear_in_transformer=True, transformer_depth=1, context_dim=64,
                legacy=False)  # v2-inference.yaml: model_channels 320, channel_mult 1,2,4,4, context 1024
SD2_TEXT = dict(VIT_L14_TEXT, hidden_size=64, intermediate_size=256, num_hidden_layers=24, num_attention_heads=1,
                projection_dim=64, hidden_act="gelu")  # ViT-H/14: 1024 wide, 24 layers
V_CONFIG = 'model:\n  params:\n    parameterization: "v"\n'


def build_sd2_parts(seed: int = 21):
    from transformers import CLIPTextConfig, CLIPTextModel

    unet = _seeded(seed, lambda: build_unet(SD2_UNET))
    vae = _calibrate_latent_scale(_seeded(seed + 1, lambda: LatentVAE(DEMO_VAE, embed_dim=4)))
    text = _seeded(seed + 2, lambda: CLIPTextModel(CLIPTextConfig(**SD2_TEXT)))
    return unet, vae, text


def save_sd2_checkpoint(path: Path, *, v_prediction: bool, seed: int = 21) -> Path:
    unet, vae, text = build_sd2_parts(seed)
    sd = {UNET_PREFIX + k: v for k, v in unet.state_dict().items()}
    sd.update({VAE_PREFIX + k: v for k, v in vae.state_dict().items()})
    open_clip = transformers_to_open_clip(text.state_dict())
    open_clip["text_projection"] = torch.randn(64, 64, generator=torch.Generator().manual_seed(seed)) * 0.1
    sd.update({SD2_TEXT_PREFIX + k: v for k, v in open_clip.items()})
    _save(sd, path)
    if v_prediction:
        path.with_suffix(".yaml").write_text(V_CONFIG, encoding="utf-8")
    return path
