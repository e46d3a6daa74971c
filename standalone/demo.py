"""The embedded default: a small random-weight SD1.x checkpoint and a matching ControlNet, made on demand.

Both files have every key name of the real layouts (`model.diffusion_model.*`, `first_stage_model.*`,
`cond_stage_model.transformer.*`; `control_model.*`) at reduced widths, so the whole pipeline - loading,
detection, the hook, every sampler - runs on a fresh machine in seconds on a CPU. They are not models of
anything: their images are structured noise, and every result made with them says so (`DEMO_NOTICE`).

The weights come from fixed seeds and the files carry fixed metadata, so the same bytes come out every time
(on one torch version). Tensors that the original code initialises to zero (ResBlock and transformer output
convs, the UNet's last conv, the ControlNet's zero convs and last hint conv, norm biases) are redrawn:
otherwise the UNet's output would be exactly zero and no ControlNet could change anything.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from .checkpoint import TEXT_PREFIX, UNET_PREFIX, VAE_PREFIX
from .paths import checkpoint_dir, controlnet_dir, demo_dir
from .text_encoder import VIT_L14_TEXT
from .unet import V1_INFERENCE, build_unet
from .vae import V1_DDCONFIG, LatentVAE

DEMO_METADATA_KEY = "standalone_demo"
DEMO_VERSION = "2"  # bump when the demo layout changes: older files are then rebuilt
DEMO_NOTICE = (
    "Made with the random-weight DEMO model: its weights are random, so this image is noise, not a Stable "
    "Diffusion result. Put an SD1.x, SD2.x or SDXL checkpoint in models/Stable-diffusion (or pass --ckpt) for "
    "real images."
)
# the random-weight demos `launch.py --demo NAME` can serve (sd15 is the default when no checkpoint is found)
DEMO_FAMILIES = ("sd15", "sdxl")
CHECKPOINT_NAME = "demo-random-weights-sd15.safetensors"
CONTROLNET_NAME = "demo-random-weights-controlnet-sd15.safetensors"

# v1-inference.yaml's layout at a tenth of the UNet width; CLIP and VAE likewise narrowed, depth kept
DEMO_UNET = dict(V1_INFERENCE, model_channels=32, context_dim=64)
DEMO_TEXT = dict(VIT_L14_TEXT, hidden_size=64, intermediate_size=256, num_attention_heads=1, projection_dim=64)
DEMO_VAE = dict(V1_DDCONFIG, ch=32)
DEMO_HINT_WIDTHS = (16, 16, 32, 32, 96, 96, 256)  # the published hint encoder's widths (before the last conv)
SEEDS = {"unet": 1, "vae": 2, "text": 3, "controlnet": 4}
REDRAW_STD = 0.02


@dataclass(frozen=True)
class DemoModels:
    checkpoint: Path
    controlnet: Path


def demo_paths(models_dir: Path, family: str = "sd15") -> DemoModels:
    if family == "sdxl":
        from .demo_sdxl import sdxl_demo_paths

        return sdxl_demo_paths(models_dir)
    root = demo_dir(models_dir)
    return DemoModels(checkpoint_dir(root) / CHECKPOINT_NAME, controlnet_dir(root) / CONTROLNET_NAME)


def ensure_demo_models(models_dir: Path, family: str = "sd15") -> DemoModels:
    """Write the demo files unless current ones are already there; returns their paths."""
    if family not in DEMO_FAMILIES:
        raise ValueError(f"no {family!r} demo (available: {', '.join(DEMO_FAMILIES)})")
    if family == "sdxl":
        from .demo_sdxl import ensure_sdxl_demo_models

        return ensure_sdxl_demo_models(models_dir)
    paths = demo_paths(models_dir)
    if not _is_current(paths.checkpoint):
        unet, vae, text = build_demo_parts()
        sd = {UNET_PREFIX + k: v for k, v in unet.state_dict().items()}
        sd.update({VAE_PREFIX + k: v for k, v in vae.state_dict().items()})
        sd.update({TEXT_PREFIX + k: v for k, v in text.state_dict().items()})
        # published SD1.x files carry the constant position ids; keep the real layout
        sd[TEXT_PREFIX + "text_model.embeddings.position_ids"] = torch.arange(77)[None]
        _save(sd, paths.checkpoint)
    if not _is_current(paths.controlnet):
        unet, _, _ = build_demo_parts(only_unet=True)
        _save({"control_model." + k: v for k, v in demo_controlnet_state_dict(unet).items()}, paths.controlnet)
    return paths


def redraw_zeros_(module: nn.Module, seed: int, std: float = REDRAW_STD) -> nn.Module:
    """Redraw every parameter the constructor left at exactly zero; the others keep their (seeded) init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(module.named_parameters()):
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return module


def _seeded(seed: int, make):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return redraw_zeros_(make(), seed)


def build_demo_parts(only_unet: bool = False):
    unet = _seeded(SEEDS["unet"], lambda: build_unet(DEMO_UNET))
    if only_unet:
        return unet, None, None
    vae = _calibrate_latent_scale(_seeded(SEEDS["vae"], lambda: LatentVAE(DEMO_VAE, embed_dim=4)))

    def make_text():
        from transformers import CLIPTextConfig, CLIPTextModel

        return CLIPTextModel(CLIPTextConfig(**DEMO_TEXT))

    text = _seeded(SEEDS["text"], make_text)
    return unet, vae, text


def _calibrate_latent_scale(vae: LatentVAE) -> LatentVAE:
    """Scale the random encoder so that its scaled latents have unit spread, as SD's trained VAE gives.

    A random encoder's latents are tiny (std ~0.03 after scaling); the decoder's first GroupNorm then magnifies
    every small change of them, and img2img at low strength would look nothing like its input. The decoder's
    entry conv is scaled inversely, so decode(encode(x)) is unchanged.
    """
    g = torch.Generator().manual_seed(SEEDS["vae"])
    probe = torch.nn.functional.interpolate(torch.rand(4, 3, 8, 8, generator=g) * 2 - 1, size=(64, 64),
                                            mode="bilinear", align_corners=False)
    with torch.no_grad():
        factor = 1.0 / float(vae.encode(probe).std())
        half = vae.embed_dim
        vae.quant_conv.weight[:half] *= factor
        vae.quant_conv.bias[:half] *= factor
        vae.post_quant_conv.weight /= factor
    return vae


def demo_controlnet_state_dict(unet: nn.Module) -> dict[str, torch.Tensor]:
    """A ControlNet whose encoder starts as a copy of the UNet's (as the original training code initialises it)."""
    from lib_controlnet.models.networks.arch import arch_from_shapes
    from lib_controlnet.models.networks.controlnet import ControlNet

    unet_sd = unet.state_dict()
    shapes = {k: tuple(v.shape) for k, v in unet_sd.items() if k.startswith(("time_embed.", "input_blocks.",
                                                                             "middle_block."))}
    widths = (3, *DEMO_HINT_WIDTHS, DEMO_UNET["model_channels"])
    for i in range(len(widths) - 1):
        shapes[f"input_hint_block.{2 * i}.weight"] = (widths[i + 1], widths[i], 3, 3)
        shapes[f"input_hint_block.{2 * i}.bias"] = (widths[i + 1],)
    arch = replace(arch_from_shapes(shapes), num_heads=DEMO_UNET["num_heads"])
    net = _seeded(SEEDS["controlnet"], lambda: ControlNet(arch))
    sd = net.state_dict()
    sd.update({k: v.clone() for k, v in unet_sd.items() if k in sd})
    return sd


def _save(state_dict: dict[str, torch.Tensor], path: Path) -> None:
    # float16 like the published pruned files; integer tensors (position ids) keep their type
    tensors = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state_dict.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # one metadata key only: safetensors writes several in a random order, and the bytes must not change
    save_file(tensors, str(tmp), metadata={DEMO_METADATA_KEY: _marker()})
    os.replace(tmp, path)


def _is_current(path: Path) -> bool:
    if not path.exists():
        return False
    from .checkpoint import read_metadata

    return read_metadata(path).get(DEMO_METADATA_KEY) == _marker()


def _marker() -> str:
    return json.dumps({"weights": "random", "version": DEMO_VERSION, "notice": DEMO_NOTICE}, sort_keys=True)
