"""Training the toy's UNet and text model together, on the trained VAE's latents of rendered scenes.

The objective is SD's: the eps prediction of latent diffusion with SD1.x's 1000-step scaled-linear schedule
(`..schedule`), so the host's samplers run the result like any SD1.x checkpoint. The text model (CLIP's
layout, trained from scratch) learns jointly through the UNet's cross-attention, as the LDM paper's own
text-to-image model did; it reads each caption exactly as the host will (CLIP's BPE, one 77-token chunk,
its last layer). 10 % of the captions are replaced by the empty prompt so that classifier-free guidance has
an unconditional model to push away from. Two departures from SD's recipe make the caption matter at this
size (`noise`, `noise_weights`): an offset noise, and the noisy steps' loss weighted up. An exponential
moving average of the weights is kept (and saved for resume); the checkpoint gets the averaged weights.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from lib_controlnet.errors import InputError
from standalone.embedded import CHECKPOINT_NAME

from ..loop import Loop, LoopConfig, atomic_write, step_generator
from ..schedule import NoiseSchedule
from .base_model import (
    RESOLUTION,
    build_text_part,
    build_unet_part,
    caption_token_ids,
    checkpoint_state_dict,
    save_checkpoint,
)
from .dataset import SceneSet
from .vae_training import VAE_FILE, load_trained_vae


@dataclass
class UNetTraining:
    work_dir: Path  # the toy's work folder: reads vae/vae.safetensors, writes unet/
    steps: int = 6000
    batch_size: int = 32
    lr: float = 4e-4
    warmup_steps: int = 200
    prompt_dropout: float = 0.1
    offset_noise: float = 0.1  # per-image, per-channel noise offset (see micro_loss)
    high_noise_weight: float = 5.0  # the most a noisy step's loss is weighted up (see noise_weights)
    ema_decay: float = 0.999
    scenes: int = 4096
    seed: int = 0
    save_every: int = 250
    resume: bool = False

    def __post_init__(self):
        self.work_dir = Path(self.work_dir)
        if not 0.0 <= self.prompt_dropout < 1.0:
            raise InputError(f"prompt_dropout must be in [0, 1), got {self.prompt_dropout}", field="prompt_dropout")

    @property
    def unet_dir(self) -> Path:
        return self.work_dir / "unet"


def toy_tokenizer():
    from standalone.clip_vocab import load_tokenizer
    from standalone.paths import DEFAULT_MODELS_DIR, tokenizer_dir

    return load_tokenizer(tokenizer_dir(DEFAULT_MODELS_DIR))


def prompt_ids(captions: list[str], tokenizer=None) -> torch.Tensor:
    """N x 77 token ids, each caption one chunk as the host's prompt encoder builds it ("" gives the empty one)."""
    from standalone.prompt_encoder import PromptEncoder

    encoder = PromptEncoder(None, tokenizer or toy_tokenizer())
    rows = []
    for text in captions:
        chunks = encoder.chunks(text)
        if len(chunks) != 1:
            raise InputError(f"caption longer than one 75-token chunk: {text!r}", field="caption")
        rows.append(chunks[0].ids)
    return torch.tensor(rows, dtype=torch.long)


class UNetTrainer:
    def __init__(self, config: UNetTraining, scenes: SceneSet | None = None, vae=None):
        self.config = c = config
        vae_path = c.work_dir / "vae" / VAE_FILE
        if vae is None:
            if not vae_path.is_file():
                raise InputError(f"{vae_path} does not exist: train the VAE first (stage vae)", field="work_dir")
            vae = load_trained_vae(vae_path)
        self.vae = vae
        self.scenes = scenes if scenes is not None else SceneSet.make(c.scenes, RESOLUTION, c.seed)
        self.tokenizer = toy_tokenizer()
        self.ids = prompt_ids(self.scenes.captions, self.tokenizer)
        self.empty_ids = prompt_ids([""], self.tokenizer)[0]
        self.unet = build_unet_part().train()
        self.text = build_text_part().train()
        self.schedule = NoiseSchedule.from_checkpoint(None)
        self.latents: torch.Tensor | None = None
        params = {f"unet.{k}": p for k, p in self.unet.named_parameters()}
        params.update({f"text.{k}": p for k, p in self.text.named_parameters()})
        self.ema = {k: p.detach().clone() for k, p in params.items()}
        loop = LoopConfig(steps=c.steps, lr=c.lr, work_dir=c.unet_dir, warmup_steps=c.warmup_steps,
                          cosine_decay=True, seed=c.seed, save_every=c.save_every, precision="fp32",
                          description="toy UNet", extra={"unet": {k: str(v) for k, v in vars(c).items()}})
        self.loop = Loop(params, loop, torch.device("cpu"), extra_tensors={f"ema.{k}": v for k, v in self.ema.items()})

    # --- data -----------------------------------------------------------------------------------------
    def cache_latents(self) -> torch.Tensor:
        """Every scene's scaled latent, encoded once (and kept in the work folder for resumed runs)."""
        path = self.config.unet_dir / "latents.safetensors"
        stamp = {"vae": self.vae_stamp(), "scenes": str(len(self.scenes)), "seed": str(self.config.seed)}
        if path.is_file():
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                if f.metadata() == stamp:
                    self.latents = f.get_tensor("latents")
                    return self.latents
        out = []
        with torch.no_grad():
            for start in range(0, len(self.scenes), 32):
                out.append(self.vae.encode(self.scenes.pixels(range(start, min(start + 32, len(self.scenes))))))
        self.latents = torch.cat(out).float()
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"latents": self.latents.contiguous()}, str(path), metadata=stamp)
        return self.latents

    def vae_stamp(self) -> str:
        """A digest of the VAE's weights: cached latents of another VAE are not reused."""
        digest = hashlib.sha256()
        for k, v in sorted(self.vae.state_dict().items()):
            digest.update(k.encode())
            digest.update(v.detach().float().cpu().numpy().tobytes())
        return digest.hexdigest()[:16]

    def micro_loss(self, step: int, micro: int) -> torch.Tensor:
        c = self.config
        if self.latents is None:
            self.cache_latents()
        g = step_generator(c.seed, step, micro, stream=2)
        indices = torch.randint(0, len(self.scenes), (c.batch_size,), generator=g)
        drop = torch.rand(c.batch_size, generator=g) < c.prompt_dropout
        t = self.schedule.sample_timesteps(c.batch_size, g)
        x0 = self.latents[indices]
        noise = self.noise(x0.shape, g)
        ids = torch.where(drop[:, None], self.empty_ids[None], self.ids[indices])
        context = self.text(input_ids=ids).last_hidden_state
        eps = self.unet(self.schedule.add_noise(x0, noise, t), t, context)
        per_image = F.mse_loss(eps, noise, reduction="none").mean(dim=(1, 2, 3))
        return (per_image * self.noise_weights(t)).mean()

    def noise(self, shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
        """randn plus a shared offset per image and channel. An 8x8 latent's mean keeps its scene's background
        through SD's schedule (the last step still leaks sqrt(0.0047) of it, and 64 positions average the noise
        down), so with plain noise the model reads the background off the noise instead of the caption, and
        from the sampler's pure noise paints a random one; the offset hides that mean."""
        noise = torch.randn(shape, generator=generator)
        if self.config.offset_noise:
            noise = noise + self.config.offset_noise * torch.randn(shape[0], shape[1], 1, 1, generator=generator)
        return noise

    def noise_weights(self, t: torch.Tensor) -> torch.Tensor:
        """1/SNR clamped to [1, high_noise_weight]. The caption only decides what the noise hides, i.e. the noisy
        steps, where the eps loss weighs an error in the image by SNR = a/(1-a) (< 0.1 from t ~ 700): left
        uniform, the text model learns from a sliver of the gradient and the base ignores its prompt. The
        clamp keeps the noisiest steps from swamping the rest."""
        a = self.schedule.alphas_cumprod[t].float()
        return ((1 - a) / a).clamp(1.0, max(1.0, self.config.high_noise_weight))

    # --- averaged weights -----------------------------------------------------------------------------
    def update_ema(self, step: int) -> None:
        decay = min(self.config.ema_decay, (1 + step) / (10 + step))  # short runs: the average warms up
        with torch.no_grad():
            for k, p in self.loop.params.items():
                self.ema[k].lerp_(p.detach(), 1 - decay)

    def averaged_parts(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        unet, text = copy.deepcopy(self.unet).eval(), copy.deepcopy(self.text).eval()
        with torch.no_grad():
            for prefix, module in (("unet.", unet), ("text.", text)):
                for k, p in module.named_parameters():
                    p.copy_(self.ema[prefix + k])
        return unet, text

    # --- the run --------------------------------------------------------------------------------------
    def train(self) -> Path:
        c = self.config
        self.loop.continue_saved(c.resume, "a UNet run")
        self.cache_latents()
        if self.loop.step < c.steps:
            self.loop.run(self.micro_loss, on_step=self.update_ema, on_save=self.on_save)
        return self.write_parts()

    def on_save(self, step: int) -> None:
        self.write_parts()

    def write_parts(self) -> Path:
        """unet/parts.safetensors: the averaged UNet and text model (float32, SD1.x keys), for stage base."""
        unet, text = self.averaged_parts()
        sd = checkpoint_state_dict(unet, self.vae, text, keep_tokens=caption_token_ids(self.tokenizer,
                                                                                        self.scenes.captions))
        path = self.config.unet_dir / "parts.safetensors"
        atomic_write(path, lambda tmp: save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp)))
        return path


def train_unet(config: UNetTraining) -> tuple[Path, dict]:
    trainer = UNetTrainer(config)
    path = trainer.train()
    return path, {"step": trainer.loop.step, "loss": round(trainer.loop.last_loss, 5)}


def write_base_checkpoint(work_dir: Path, output: Path | None = None) -> Path:
    """The float16 checkpoint the host loads, from unet/parts.safetensors (the averaged weights and the VAE)."""
    import json

    work_dir = Path(work_dir)
    parts = work_dir / "unet" / "parts.safetensors"
    if not parts.is_file():
        raise InputError(f"{parts} does not exist: train the UNet first (stage unet)", field="work_dir")
    progress = json.loads((work_dir / "unet" / "state" / "progress.json").read_text())
    info = {"unet_steps": int(progress["step"])}
    vae_progress = work_dir / "vae" / "state" / "progress.json"
    if vae_progress.is_file():
        info["vae_steps"] = int(json.loads(vae_progress.read_text())["step"])
    return save_checkpoint(output or work_dir / CHECKPOINT_NAME, load_file(str(parts)), info)

