"""The random-weight SDXL demo: an SDXL checkpoint and an SDXL ControlNet with every key of the real layouts.

`python launch.py --demo sdxl` serves them. Like the SD1.x demo (demo.py) they are made on demand from fixed
seeds, carry the demo marker, and every result says that its image is noise. Layouts (sd_xl_base.yaml at
reduced widths, depths kept, so every published key name is there):
- `model.diffusion_model.*`: sgm's UNet, channels 32/64/128 (published: 320/640/1280), transformer depths
  (0, 2, 10) and 10 in the middle, `label_emb` over y = pooled (64) + 6 x 256 size embeddings;
- `conditioner.embedders.0.transformer.*`: CLIP ViT-L's 12 layers at width 64;
- `conditioner.embedders.1.model.*`: OpenCLIP ViT-bigG's 32 layers at width 64, with `text_projection` and
  `logit_scale`, in open_clip's own names;
- `first_stage_model.*`: the KL VAE as in the SD1.x demo, latents scaled by SDXL's 0.13025;
- the ControlNet (`control_model.*`): the UNet's encoder copied, label_emb included, the published hint
  encoder widths, zero convs (as diffusers' SDXL ControlNets converted to the original layout).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from .checkpoint import SDXL_CLIP_G_PREFIX, SDXL_CLIP_L_PREFIX, UNET_PREFIX, VAE_PREFIX
from .paths import checkpoint_dir, controlnet_dir, demo_dir
from .sgm_unet import SgmUNet, sdxl_base_layout
from .text_encoder import OPEN_CLIP_LAYER_NAMES, VIT_L14_TEXT
from .vae import SDXL_SCALE_FACTOR, LatentVAE

CHECKPOINT_NAME = "demo-random-weights-sdxl.safetensors"
CONTROLNET_NAME = "demo-random-weights-controlnet-sdxl.safetensors"
SIZE_EMBED = 256  # sgm's ConcatTimestepEmbedderND outdim
DEMO_CLIP_L = dict(VIT_L14_TEXT, hidden_size=64, intermediate_size=256, num_attention_heads=1, projection_dim=64)
DEMO_CLIP_G = dict(VIT_L14_TEXT, hidden_size=64, intermediate_size=256, num_hidden_layers=32, num_attention_heads=1,
                   projection_dim=64, hidden_act="gelu")
DEMO_SDXL_UNET = sdxl_base_layout(model_channels=32,
                                  context_dim=DEMO_CLIP_L["hidden_size"] + DEMO_CLIP_G["hidden_size"],
                                  adm_in_channels=DEMO_CLIP_G["projection_dim"] + 6 * SIZE_EMBED)
SEEDS = {"unet": 11, "vae": 12, "clip_l": 13, "clip_g": 14, "controlnet": 15}


def sdxl_demo_paths(models_dir: Path):
    from .demo import DemoModels

    root = demo_dir(models_dir) / "sdxl"
    return DemoModels(checkpoint_dir(root) / CHECKPOINT_NAME, controlnet_dir(root) / CONTROLNET_NAME)


def transformers_to_open_clip(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of text_encoder.open_clip_to_transformers: how open_clip (and so the SDXL file) names them."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    back = {v: k for k, v in OPEN_CLIP_LAYER_NAMES.items()}
    for key, value in state_dict.items():
        if key == "text_model.embeddings.token_embedding.weight":
            out["token_embedding.weight"] = value
        elif key == "text_model.embeddings.position_embedding.weight":
            out["positional_embedding"] = value
        elif key.startswith("text_model.final_layer_norm."):
            out["ln_final." + key.rsplit(".", 1)[1]] = value
        elif key == "text_projection.weight":
            out["text_projection"] = value.t().contiguous()
        elif key.startswith("text_model.encoder.layers."):
            layer, rest = key[len("text_model.encoder.layers."):].split(".", 1)
            name, kind = rest.rsplit(".", 1)
            if name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                qkv.setdefault((layer, kind), {})[name] = value
            else:
                out[f"transformer.resblocks.{layer}.{back[name]}.{kind}"] = value
    for (layer, kind), parts in qkv.items():
        fused = torch.cat([parts[f"self_attn.{n}_proj"] for n in "qkv"])
        out[f"transformer.resblocks.{layer}.attn.in_proj_{kind}"] = fused
    out["logit_scale"] = torch.tensor(4.6052)  # ln(100), open_clip's trained value
    return out


def build_sdxl_demo_parts():
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from .demo import DEMO_VAE, _calibrate_latent_scale, _seeded

    unet = _seeded_unet()
    vae = _calibrate_latent_scale(_seeded(SEEDS["vae"], lambda: LatentVAE(DEMO_VAE, embed_dim=4,
                                                                        scale_factor=SDXL_SCALE_FACTOR)))
    clip_l = _seeded(SEEDS["clip_l"], lambda: CLIPTextModel(CLIPTextConfig(**DEMO_CLIP_L)))
    clip_g = _seeded(SEEDS["clip_g"], lambda: CLIPTextModelWithProjection(CLIPTextConfig(**DEMO_CLIP_G)))
    return unet, vae, clip_l, clip_g


def sdxl_demo_state_dict() -> dict[str, torch.Tensor]:
    unet, vae, clip_l, clip_g = build_sdxl_demo_parts()
    sd = {UNET_PREFIX + k: v for k, v in unet.state_dict().items()}
    sd.update({VAE_PREFIX + k: v for k, v in vae.state_dict().items()})
    sd.update({SDXL_CLIP_L_PREFIX + k: v for k, v in clip_l.state_dict().items()})
    sd[SDXL_CLIP_L_PREFIX + "text_model.embeddings.position_ids"] = torch.arange(77)[None]
    sd.update({SDXL_CLIP_G_PREFIX + k: v for k, v in transformers_to_open_clip(clip_g.state_dict()).items()})
    return sd


def sdxl_controlnet_state_dict(unet: torch.nn.Module, seed: int = SEEDS["controlnet"]) -> dict[str, torch.Tensor]:
    """An SDXL ControlNet whose encoder (label_emb included) starts as a copy of the UNet's."""
    from lib_controlnet.models.networks.arch import arch_from_shapes
    from lib_controlnet.models.networks.controlnet import ControlNet

    from .demo import DEMO_HINT_WIDTHS, _seeded

    unet_sd = unet.state_dict()
    shapes = {k: tuple(v.shape) for k, v in unet_sd.items()
              if k.startswith(("time_embed.", "label_emb.", "input_blocks.", "middle_block."))}
    widths = (3, *DEMO_HINT_WIDTHS, unet.model_channels)
    for i in range(len(widths) - 1):
        shapes[f"input_hint_block.{2 * i}.weight"] = (widths[i + 1], widths[i], 3, 3)
        shapes[f"input_hint_block.{2 * i}.bias"] = (widths[i + 1],)
    arch = replace(arch_from_shapes(shapes), head_dim=64)
    net = _seeded(seed, lambda: ControlNet(arch))
    sd = net.state_dict()
    sd.update({k: v.clone() for k, v in unet_sd.items() if k in sd})
    return sd


def ensure_sdxl_demo_models(models_dir: Path):
    from .demo import _is_current, _save

    paths = sdxl_demo_paths(models_dir)
    if not _is_current(paths.checkpoint):
        _save(sdxl_demo_state_dict(), paths.checkpoint)
    if not _is_current(paths.controlnet):
        unet = _seeded_unet()
        _save({"control_model." + k: v for k, v in sdxl_controlnet_state_dict(unet).items()}, paths.controlnet)
    return paths


def _seeded_unet() -> SgmUNet:
    from .demo import _seeded

    return _seeded(SEEDS["unet"], lambda: SgmUNet(DEMO_SDXL_UNET))
