"""A loaded SD1.x model: UNet, VAE, text encoder and tokenizer, plus what results must say about it."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from lib_controlnet.hook.host import HostInfo, sd_alphas_cumprod

from .checkpoint import read_checkpoint
from .clip_vocab import load_tokenizer
from .demo import DEMO_METADATA_KEY, DEMO_NOTICE
from .paths import DEFAULT_MODELS_DIR, tokenizer_dir
from .prompt_encoder import PromptEncoder
from .text_encoder import load_text_encoder
from .unet import load_unet
from .vae import LatentVAE, load_vae

SD_ALPHAS_CUMPROD = sd_alphas_cumprod()


@dataclass(eq=False)
class StableDiffusionModel:
    path: Path
    family: str
    unet: nn.Module
    vae: LatentVAE
    prompts: PromptEncoder
    is_demo: bool = False
    _hash: str | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def notice(self) -> str | None:
        """The sentence every result of a demo model carries."""
        return DEMO_NOTICE if self.is_demo else None

    def host_info(self) -> HostInfo:
        """What the ControlNet hook's controls need: the schedule, the prediction type, a VAE encoder."""
        vae = self.vae

        def encode(pixels01: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return vae.encode((pixels01 * 2 - 1).to(self.device, torch.float32)).to(self.dtype)

        return HostInfo(alphas_cumprod=SD_ALPHAS_CUMPROD, prediction="eps", encode_image=encode, family=self.family)

    def short_hash(self) -> str:
        """A1111's model hash: the first 10 hex digits of the file's sha256 (computed once)."""
        if self._hash is None:
            digest = hashlib.sha256()
            with open(self.path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            self._hash = digest.hexdigest()[:10]
        return self._hash


def load_sd_model(
    path: str | os.PathLike,
    *,
    models_dir: Path = DEFAULT_MODELS_DIR,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> StableDiffusionModel:
    """Load an SD1.x single-file checkpoint. The VAE stays in float32 (SD1.x's VAE overflows in fp16)."""
    ckpt = read_checkpoint(path)
    unet = load_unet(ckpt.unet, dtype).to(device)
    vae = load_vae(ckpt.vae, torch.float32).to(device)
    text = load_text_encoder(ckpt.text_encoder, dtype).to(device)
    tokenizer = load_tokenizer(tokenizer_dir(models_dir))
    return StableDiffusionModel(
        path=ckpt.path,
        family=ckpt.family,
        unet=unet,
        vae=vae,
        prompts=PromptEncoder(text, tokenizer),
        is_demo=ckpt.metadata.get(DEMO_METADATA_KEY) is not None,
    )
