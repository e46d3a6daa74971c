"""Training the toy's KL autoencoder (SD1.x's VAE layout at reduced widths) on rendered scenes.

The objective is the KL autoencoder's without its discriminator and LPIPS (flat shapes need neither): an L1
reconstruction of a posterior sample (optionally an L1 on the image's horizontal and vertical differences too,
off by default: it slowed learning), and a small KL term that keeps the latents smooth. Training runs first on
random crops (a multiple of 8 px; the network is convolutional, so a 32 px crop costs a quarter of a whole 64x64
image), then on whole images, with the package's loop (AdamW, cosine decay, checkpoints, exact resume).

At the end the latents are normalised as SD's are by its `scale_factor`: the 1x1 `quant_conv` is shifted and
scaled per channel so that the scaled latents the host sees (mean x 0.18215) have zero mean and unit spread on
the training scenes, and `post_quant_conv` undoes it, so decode(encode(x)) is unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from lib_controlnet.errors import InputError

from ..edges import canny_edges, edge_f1
from ..loop import Loop, LoopConfig, step_generator
from .base_model import LATENT_FACTOR, RESOLUTION, build_vae_part
from .dataset import SceneSet

VAE_FILE = "vae.safetensors"
LOGVAR_INIT = -6.0  # the posterior's starting spread: std 0.05


@dataclass
class VAETraining:
    work_dir: Path
    steps: int = 2000
    batch_size: int = 8
    crop: int = 32  # px, a multiple of 8; >= the resolution: whole images
    # from this step on, whole images: crops decode worse at the whole size (2500 crop steps: edge F1 0.63;
    # 250 whole steps after them: 0.88), so crops only start the run
    whole_after: int = 400
    lr: float = 1e-3
    warmup_steps: int = 100
    kl_weight: float = 1e-5
    edge_weight: float = 0.0  # 1.0 slowed learning badly (300 steps: edge F1 0.07 against 0.47 without)
    scenes: int = 8192
    seed: int = 0
    save_every: int = 250
    resume: bool = False

    def __post_init__(self):
        self.work_dir = Path(self.work_dir)
        if self.crop % LATENT_FACTOR:
            raise InputError(f"crop must be a multiple of {LATENT_FACTOR}, got {self.crop}", field="crop")


@torch.no_grad()
def start_posterior_narrow_(vae, logvar: float = LOGVAR_INIT) -> None:
    """Start every posterior variance at exp(logvar) (zero weights, constant bias of the logvar rows).

    With the constructor's init the variance starts near 1 while a random encoder's means are ~0.3: the
    decoder's input is then almost all noise, it learns to ignore it and draws the average picture (measured:
    after 750 steps every reconstruction was one flat colour, edge F1 0.01)."""
    k = vae.embed_dim
    vae.quant_conv.weight[k:] = 0
    vae.quant_conv.bias[k:] = logvar


def posterior(vae, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, logvar) of q(z | x), before the scale factor."""
    mean, logvar = vae.quant_conv(vae.encoder(x)).chunk(2, dim=1)
    return mean, logvar.clamp(-30.0, 20.0)


def decode_raw(vae, z: torch.Tensor) -> torch.Tensor:
    return vae.decoder(vae.post_quant_conv(z))


def vae_loss(vae, x: torch.Tensor, noise: torch.Tensor, kl_weight: float, edge_weight: float) -> torch.Tensor:
    mean, logvar = posterior(vae, x)
    z = mean + (0.5 * logvar).exp() * noise
    y = decode_raw(vae, z)
    loss = F.l1_loss(y, x)
    if edge_weight:
        loss = loss + edge_weight * (F.l1_loss(y.diff(dim=-1), x.diff(dim=-1)) + F.l1_loss(y.diff(dim=-2),
                                                                                           x.diff(dim=-2)))
    kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).mean()
    return loss + kl_weight * kl


class VAETrainer:
    def __init__(self, config: VAETraining, scenes: SceneSet | None = None):
        self.config = c = config
        self.scenes = scenes if scenes is not None else SceneSet.make(c.scenes, RESOLUTION, c.seed)
        self.vae = build_vae_part().train()
        start_posterior_narrow_(self.vae)
        loop = LoopConfig(steps=c.steps, lr=c.lr, work_dir=c.work_dir, weight_decay=0.0, warmup_steps=c.warmup_steps,
                          cosine_decay=True, seed=c.seed, save_every=c.save_every, precision="fp32",
                          description="toy VAE", extra={"vae": {k: str(v) for k, v in vars(c).items()}})
        self.loop = Loop(dict(self.vae.named_parameters()), loop, torch.device("cpu"))

    def batch(self, step: int, micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(images or crops in [-1, 1], the posterior's noise): a pure function of (seed, step, micro)."""
        c = self.config
        g = step_generator(c.seed, step, micro, stream=1)
        indices = torch.randint(0, len(self.scenes), (c.batch_size,), generator=g)
        x = self.scenes.pixels(indices.numpy())
        size = x.shape[-1]
        if c.crop < size and step < c.whole_after:
            cells = (size - c.crop) // LATENT_FACTOR + 1
            offsets = torch.randint(0, cells, (c.batch_size, 2), generator=g) * LATENT_FACTOR
            x = torch.stack([img[:, oy:oy + c.crop, ox:ox + c.crop] for img, (oy, ox) in zip(x, offsets.tolist())])
        latent = x.shape[-1] // LATENT_FACTOR
        noise = torch.randn((c.batch_size, self.vae.embed_dim, latent, latent), generator=g)
        return x, noise

    def micro_loss(self, step: int, micro: int) -> torch.Tensor:
        x, noise = self.batch(step, micro)
        return vae_loss(self.vae, x, noise, self.config.kl_weight, self.config.edge_weight)

    def train(self) -> Path:
        c = self.config
        self.loop.continue_saved(c.resume, "a VAE run")
        if self.loop.step < c.steps:
            self.loop.run(self.micro_loss)
        self.vae.eval()
        normalise_latents_(self.vae, self.scenes)
        path = c.work_dir / VAE_FILE
        save_file({k: v.contiguous() for k, v in self.vae.state_dict().items()}, str(path))
        return path


@torch.no_grad()
def normalise_latents_(vae, scenes: SceneSet, count: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift and scale `quant_conv`'s mean rows per channel so that encode() (mean x scale factor) has zero mean
    and unit spread on `scenes`; `post_quant_conv` and the logvar rows are changed to match. Returns the
    (mean, std) per channel of the raw latent means before."""
    x = scenes.pixels(np.arange(min(count, len(scenes))))
    means = torch.cat([posterior(vae, x[i:i + 64])[0] for i in range(0, len(x), 64)])
    mu = means.mean(dim=(0, 2, 3))
    std = means.std(dim=(0, 2, 3))
    s = 1.0 / (std * vae.scale_factor)  # new raw mean = (old - mu) * s
    k = vae.embed_dim
    q, p = vae.quant_conv, vae.post_quant_conv
    q.weight[:k] *= s.view(-1, 1, 1, 1)
    q.bias[:k] = (q.bias[:k] - mu) * s
    q.bias[k:] += 2 * torch.log(s)  # the posterior's variance scales by s^2
    # post_quant_conv(z_old) with z_old = z_new / s + mu
    p.bias += (p.weight[:, :, 0, 0] * mu).sum(dim=1)
    p.weight /= s.view(1, -1, 1, 1)
    return mu, std


def load_trained_vae(path: Path):
    from standalone.vae import load_vae

    return load_vae(load_file(str(path)))


@torch.no_grad()
def reconstruction_report(vae, scenes: SceneSet, count: int = 64) -> dict[str, float]:
    """How well decode(encode(x)) keeps the scenes: mean absolute error (0-255) and canny edge F1 (2 px)."""
    x = scenes.pixels(np.arange(min(count, len(scenes))))
    y = vae.decode(vae.encode(x)).clamp(-1, 1)
    back = ((y + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    error = float(np.abs(back.astype(np.float32) - scenes.images[: len(back)].astype(np.float32)).mean())
    f1 = [edge_f1(canny_edges(b), canny_edges(a)) for a, b in zip(scenes.images[: len(back)], back)]
    z = vae.encode(x)
    return {"mae_255": round(error, 3), "edge_f1": round(float(np.mean(f1)), 4),
            "latent_mean": round(float(z.mean()), 4), "latent_std": round(float(z.std()), 4),
            "finite": math.isfinite(error)}
