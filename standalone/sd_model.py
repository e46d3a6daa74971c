"""A loaded model (SD1.x, SD2.x or SDXL): UNet, VAE, text encoder(s) and tokenizer, plus what results must say.

Prediction type: what the file declares (checkpoint.declared_prediction_type), else eps - except SD2.x, where
768-v and 512-base share one layout and A1111 tells them apart by running the UNet once on a fixed input
(`is_using_v_parameterization_for_sd2`: a v model's output minus its input averages below -1); so does this.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from lib_controlnet.hook.host import HostInfo, sd_alphas_cumprod

from .checkpoint import EPSILON, V_PREDICTION, read_checkpoint
from .clip_vocab import load_tokenizer
from .demo import DEMO_NOTICE
from .embedded import RANDOM_INFOTEXT, DemoLabel, demo_label
from .paths import DEFAULT_MODELS_DIR, tokenizer_dir
from .prompt_encoder import PENULTIMATE, PENULTIMATE_NORMED, PromptEncoder, TextTower
from .text_encoder import load_open_clip_text_encoder, load_text_encoder
from .unet import load_unet
from .vae import SCALE_FACTORS, LatentVAE, load_vae

NATIVE_SIZES = {("sd1", EPSILON): 512, ("sd1", V_PREDICTION): 768, ("sd2", EPSILON): 512,
                ("sd2", V_PREDICTION): 768, ("sdxl", EPSILON): 1024, ("sdxl", V_PREDICTION): 1024}

SD_ALPHAS_CUMPROD = sd_alphas_cumprod()


@dataclass(eq=False)
class StableDiffusionModel:
    path: Path
    family: str
    unet: nn.Module
    vae: LatentVAE
    prompts: PromptEncoder
    is_demo: bool = False
    prediction_type: str = EPSILON
    demo: DemoLabel | None = None  # what a demo checkpoint's marker says it is (embedded.demo_label)
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
    def default_size(self) -> int:
        """The side the model was trained at (512, 768 for v-prediction SD2.x, 1024 for SDXL; the embedded toy's
        own, 64): the page's and the API's default image size."""
        if self.demo is not None and self.demo.native_size:
            return self.demo.native_size
        return NATIVE_SIZES[(self.family, self.prediction_type)]

    @property
    def adm_in_channels(self) -> int | None:
        """Width of SDXL's `y` (None: the UNet takes none)."""
        layout = getattr(self.unet, "layout", None)
        return getattr(layout, "adm_in_channels", None)

    @property
    def notice(self) -> str | None:
        """The sentence every result of a demo model carries."""
        if not self.is_demo:
            return None
        return self.demo.notice if self.demo is not None else DEMO_NOTICE

    @property
    def demo_infotext(self) -> str | None:
        """The infotext's "Demo model" entry: what made the image, when it was not a real checkpoint."""
        if not self.is_demo:
            return None
        return self.demo.infotext if self.demo is not None else RANDOM_INFOTEXT

    def host_info(self) -> HostInfo:
        """What the ControlNet hook's controls need: the schedule, the prediction type, a VAE encoder."""
        vae = self.vae

        def encode(pixels01: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return vae.encode((pixels01 * 2 - 1).to(self.device, torch.float32)).to(self.dtype)

        prediction = "v" if self.prediction_type == V_PREDICTION else "eps"
        return HostInfo(alphas_cumprod=SD_ALPHAS_CUMPROD, prediction=prediction, encode_image=encode,
                        family=self.family)

    def short_hash(self) -> str:
        """A1111's model hash: the first 10 hex digits of the file's sha256 (computed once)."""
        if self._hash is None:
            digest = hashlib.sha256()
            with open(self.path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            self._hash = digest.hexdigest()[:10]
        return self._hash


def _towers(family: str, texts: dict, dtype: torch.dtype) -> list[TextTower]:
    if family == "sd1":
        return [TextTower(load_text_encoder(texts["clip_l"], dtype))]
    if family == "sd2":
        return [TextTower(load_open_clip_text_encoder(texts["open_clip_h"], dtype), layer=PENULTIMATE_NORMED,
                          pad_with_zero=True)]
    return [TextTower(load_text_encoder(texts["clip_l"], dtype), layer=PENULTIMATE),
            TextTower(load_open_clip_text_encoder(texts["clip_g"], dtype, with_projection=True), layer=PENULTIMATE,
                      pad_with_zero=True, pooled=True)]


@torch.no_grad()
def v_prediction_by_test(unet: nn.Module, context_dim: int) -> bool:
    """A1111's SD2.x test: a v model's output minus its input, on 0.5s at t = 999, averages below -1."""
    p = next(unet.parameters())
    x = torch.full((1, 4, 8, 8), 0.5, device=p.device, dtype=p.dtype)
    context = torch.full((1, 2, context_dim), 0.5, device=p.device, dtype=p.dtype)
    out = unet(x, torch.tensor([999.0], device=p.device), context=context)
    return float((out - x).float().mean()) < -1


def load_sd_model(
    path: str | os.PathLike,
    *,
    models_dir: Path = DEFAULT_MODELS_DIR,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> StableDiffusionModel:
    """Load a single-file checkpoint of any supported family. The VAE stays in float32 (SD's VAEs overflow
    in fp16)."""
    ckpt = read_checkpoint(path)
    family = ckpt.family
    unet = load_unet(ckpt.unet, dtype, family).to(device)
    vae = load_vae(ckpt.vae, torch.float32, SCALE_FACTORS[family]).to(device)
    towers = _towers(family, ckpt.text_encoders, dtype)
    for tower in towers:
        tower.model.to(device)
    tokenizer = load_tokenizer(tokenizer_dir(models_dir))
    prediction = ckpt.prediction_type
    if prediction is None:
        context_dim = sum(t.model.config.hidden_size for t in towers)
        prediction = V_PREDICTION if family == "sd2" and v_prediction_by_test(unet, context_dim) else EPSILON
    return StableDiffusionModel(
        path=ckpt.path,
        family=family,
        unet=unet,
        vae=vae,
        prompts=PromptEncoder(towers[0].model, tokenizer, towers),
        is_demo=demo_label(ckpt.metadata) is not None,
        demo=demo_label(ckpt.metadata),
        prediction_type=prediction,
    )
