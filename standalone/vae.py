"""SD's KL autoencoder in the ldm layout, built from ldm's own `Encoder`/`Decoder` modules.

The checkpoint's `first_stage_model.` holds `encoder.*`, `decoder.*`, `quant_conv.*`, `post_quant_conv.*`.
ldm's `AutoencoderKL` class itself needs pytorch_lightning, so this small module assembles the same four parts
from `ldm.modules.diffusionmodules.model` (which imports with torch alone). Latents are scaled by 0.18215
(v1/v2-inference.yaml's `scale_factor`), SDXL's by 0.13025. Encoding takes the posterior's mean, not a sample:
img2img stays reproducible from the seed alone (A1111 samples it with the global RNG).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from lib_controlnet.errors import ModelFileError

from .unet import load_exact, quiet

SCALE_FACTOR = 0.18215
SDXL_SCALE_FACTOR = 0.13025  # sd_xl_base.yaml's scale_factor: SDXL's own VAE has wider latents
SCALE_FACTORS = {"sd1": SCALE_FACTOR, "sd2": SCALE_FACTOR, "sdxl": SDXL_SCALE_FACTOR}

# v1-inference.yaml, first_stage_config.params.ddconfig (attn_resolutions are taken from the file's keys)
V1_DDCONFIG = dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=128,
                   ch_mult=[1, 2, 4, 4], num_res_blocks=2, attn_resolutions=[], dropout=0.0)


def vae_config_from_shapes(shapes: Mapping[str, tuple[int, ...]]) -> tuple[dict, int]:
    """(ddconfig, embed_dim) read from the VAE's key shapes (without prefix)."""
    try:
        ch, in_channels = shapes["encoder.conv_in.weight"][:2]
        levels = sorted({int(m.group(1)) for k in shapes if (m := re.match(r"encoder\.down\.(\d+)\.", k))})
        ch_mult = [shapes[f"encoder.down.{i}.block.0.conv2.weight"][0] // ch for i in levels]
        num_res = len({m.group(1) for k in shapes if (m := re.match(r"encoder\.down\.0\.block\.(\d+)\.", k))})
        z_channels = shapes["decoder.conv_in.weight"][1]
        embed_dim = shapes["quant_conv.weight"][0] // 2
        out_ch = shapes["decoder.conv_out.weight"][0]
        double_z = shapes["encoder.conv_out.weight"][0] == 2 * z_channels
    except KeyError as e:
        raise ModelFileError(f"the VAE does not have the ldm KL-autoencoder layout (missing {e})") from None
    resolution = V1_DDCONFIG["resolution"]
    attn = sorted({resolution // 2**i for i in levels if any(k.startswith(f"encoder.down.{i}.attn.") for k in shapes)})
    config = dict(V1_DDCONFIG, ch=ch, in_channels=in_channels, out_ch=out_ch, ch_mult=ch_mult,
                  num_res_blocks=num_res, z_channels=z_channels, double_z=double_z, attn_resolutions=attn)
    return config, embed_dim


class LatentVAE(nn.Module):
    """encode: images in [-1, 1] -> scaled latents; decode: scaled latents -> images in [-1, 1] (unclamped)."""

    def __init__(self, ddconfig: dict, embed_dim: int, scale_factor: float = SCALE_FACTOR):
        super().__init__()
        with quiet():
            from ldm.modules.diffusionmodules.model import Decoder, Encoder

            self.encoder = Encoder(**ddconfig)
            self.decoder = Decoder(**ddconfig)
        z = ddconfig["z_channels"]
        self.quant_conv = nn.Conv2d(2 * z if ddconfig["double_z"] else z, 2 * embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z, 1)
        self.config = dict(ddconfig)
        self.embed_dim = embed_dim
        self.scale_factor = scale_factor

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        moments = self.quant_conv(self.encoder(images))
        mean = moments[:, : self.embed_dim]
        return mean * self.scale_factor

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(latents / self.scale_factor))


def _conv_attention_weights(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Some converted checkpoints store the mid-block attention's q/k/v/proj_out as [C, C]; ldm wants 1x1 convs."""
    out = {}
    for k, v in state_dict.items():
        if re.search(r"\.attn_1\.(q|k|v|proj_out)\.weight$", k) and v.ndim == 2:
            v = v[:, :, None, None]
        out[k] = v
    return out


def load_vae(state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype = torch.float32,
             scale_factor: float = SCALE_FACTOR) -> LatentVAE:
    state_dict = _conv_attention_weights(state_dict)
    ddconfig, embed_dim = vae_config_from_shapes({k: tuple(v.shape) for k, v in state_dict.items()})
    with torch.device("meta"):
        vae = LatentVAE(ddconfig, embed_dim, scale_factor)
    # the EMA/loss weights some checkpoints keep beside the autoencoder are not part of it
    weights = {k: v for k, v in state_dict.items() if not k.startswith(("loss.", "model_ema."))}
    load_exact(vae, weights, dtype, "VAE")
    return vae.eval().requires_grad_(False)
