"""Train a ControlNet on a folder of (control, target, prompt) triples on top of a frozen SD checkpoint.

The method is the paper's and its `tutorial_train.py`'s (Zhang et al. 2023, "Adding Conditional Control to
Text-to-Image Diffusion Models"): a trainable copy of the base UNet's encoder joined to the frozen base by zero
convolutions (`controlnet_init`); the base's own noise schedule and eps objective (`schedule`); the prompt
replaced by the empty prompt for half of the samples (§3.3, so the ControlNet learns to read the control map
alone); AdamW. The base (UNet, VAE, text encoder) is loaded by the standalone host's loader and never changes.

    from lib_controlnet.train import ControlNetTraining, train_controlnet
    train_controlnet(ControlNetTraining(data="fill50k", base="sd15.safetensors", output="my_canny.safetensors"))

The result is a ControlNet file in the original layout (`control_model.*` keys, safetensors), which both hosts
load like a published one (`lib_controlnet.load_control_model`).
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

from lib_controlnet.errors import InputError

from .controlnet_init import PUBLISHED_HINT_WIDTHS, controlnet_from_unet, controlnet_state_dict
from .inject import residuals_added
from .loop import Loop, LoopConfig, step_generator
from .pairs import PairDataset
from .schedule import ALPHAS_CUMPROD_KEY, NoiseSchedule

METADATA_KEY = "controlnet_training"
CONTEXT_CACHE_BYTES = 256 * 2**20


@dataclass
class ControlNetTraining:
    data: Path  # the folder with prompt.json, source/, target/
    base: Path  # the SD1.x checkpoint (.safetensors / .ckpt) the ControlNet is trained on
    output: Path  # the ControlNet file written at the end (and at every checkpoint)
    work_dir: Path | None = None  # state, samples, snapshots; default: <output without suffix>-training/
    resolution: int = 512
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 1e-5  # the tutorial's
    weight_decay: float = 1e-2
    max_grad_norm: float | None = 1.0
    steps: int = 1000
    prompt_dropout: float = 0.5  # the paper's: half the samples train with the empty prompt
    seed: int = 0
    save_every: int = 500
    sample_every: int = 500  # 0: no sample images
    sample_count: int = 4
    sample_steps: int = 20
    sample_cfg: float = 9.0  # the tutorial's logging guidance scale
    snapshots: bool = False  # keep a ControlNet file per save (for a learning curve)
    precision: str = "auto"  # fp32 on CPU; mixed precision on a GPU
    device: str = "auto"
    hint_widths: tuple[int, ...] = PUBLISHED_HINT_WIDTHS
    cache_latents: bool = False  # encode every target once (small data sets; the VAE then never runs again)
    save_dtype: str = "fp16"
    resume: bool = False
    models_dir: Path | None = None  # where the tokenizer files are derived (default: the repo's models/)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.data, self.base, self.output = Path(self.data), Path(self.base), Path(self.output)
        if self.work_dir is None:
            self.work_dir = self.output.with_name(self.output.stem + "-training")
        self.work_dir = Path(self.work_dir)
        if not 0.0 <= self.prompt_dropout <= 1.0:
            raise InputError(f"prompt_dropout must be in [0, 1], got {self.prompt_dropout}", field="prompt_dropout")
        if self.batch_size < 1:
            raise InputError("batch_size must be at least 1", field="batch_size")
        if self.save_dtype not in ("fp16", "fp32"):
            raise InputError(f"save_dtype must be fp16 or fp32, got {self.save_dtype!r}", field="save_dtype")
        self.hint_widths = tuple(int(w) for w in self.hint_widths)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def read_alphas_cumprod(path: Path) -> torch.Tensor | None:
    """The checkpoint's `alphas_cumprod` buffer, read alone (safetensors); None when it has none."""
    if path.suffix.lower() != ".safetensors":
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.get_tensor(ALPHAS_CUMPROD_KEY) if ALPHAS_CUMPROD_KEY in f.keys() else None  # noqa: SIM118 - no __contains__


class ControlNetTrainer:
    def __init__(self, config: ControlNetTraining):
        from standalone.paths import DEFAULT_MODELS_DIR
        from standalone.sd_model import load_sd_model

        self.config = c = config
        self.device = pick_device(c.device)
        base_dtype = torch.float32
        if self.device.type == "cuda" and c.precision != "fp32":
            base_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() or c.precision == "bf16" else torch.float16
        self.base = load_sd_model(c.base, models_dir=c.models_dir or DEFAULT_MODELS_DIR, device=self.device,
                                  dtype=base_dtype)
        if self.base.family != "sd1":
            raise InputError(f"{c.base.name}: training runs on SD1.x checkpoints for now", field="base")
        alphas = read_alphas_cumprod(c.base)
        self.schedule = NoiseSchedule.from_checkpoint({ALPHAS_CUMPROD_KEY: alphas} if alphas is not None else None)
        self.data = PairDataset(c.data, c.resolution)
        self.net = controlnet_from_unet(self.base.unet.state_dict(), hint_widths=c.hint_widths, seed=c.seed)
        self.net.to(self.device).train()
        loop_config = LoopConfig(
            steps=c.steps, lr=c.lr, work_dir=c.work_dir, grad_accum=c.grad_accum, weight_decay=c.weight_decay,
            max_grad_norm=c.max_grad_norm, seed=c.seed, save_every=c.save_every, sample_every=c.sample_every,
            precision=c.precision, description="ControlNet", extra={"training": _jsonable_config(c)},
        )
        self.loop = Loop(dict(self.net.named_parameters()), loop_config, self.device)
        self.latents: torch.Tensor | None = None
        self._orders: dict[int, torch.Tensor] = {}
        self._contexts: dict[str, torch.Tensor] = {}  # the frozen text encoder's output per prompt
        hidden = self.base.prompts.model.config.hidden_size
        self._context_cache_entries = CONTEXT_CACHE_BYTES // (77 * hidden * 4)

    # --- data -----------------------------------------------------------------------------------------
    def index(self, position: int) -> int:
        """Sample `position` of the run: epochs are seeded permutations of the data set."""
        n = len(self.data)
        epoch = position // n
        if epoch not in self._orders:
            self._orders = {epoch: torch.randperm(n, generator=step_generator(self.config.seed, epoch, stream=7))}
        return int(self._orders[epoch][position % n])

    def batch(self, step: int, micro: int):
        c = self.config
        start = (step * c.grad_accum + micro) * c.batch_size
        indices = [self.index(start + k) for k in range(c.batch_size)]
        items = [self.data[i] for i in indices]
        control = torch.stack([it[0] for it in items]).to(self.device)
        if self.latents is not None:
            latents = self.latents[indices].to(self.device)
        else:
            target = torch.stack([it[1] for it in items]).to(self.device)
            latents = self.base.vae.encode(target)
        return control, latents, [it[2] for it in items]

    def cache_latents(self) -> None:
        path = self.config.work_dir / "latents.safetensors"
        from safetensors.torch import load_file

        if path.is_file():
            cached = load_file(str(path))["latents"]
            if cached.shape[0] == len(self.data):
                self.latents = cached
                return
        out = []
        for start in range(0, len(self.data), 32):
            target = torch.stack([self.data[i][1] for i in range(start, min(start + 32, len(self.data)))])
            out.append(self.base.vae.encode(target.to(self.device)).float().cpu())
        self.latents = torch.cat(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"latents": self.latents.contiguous()}, str(path))

    # --- one micro-batch ------------------------------------------------------------------------------
    def micro_loss(self, step: int, micro: int) -> torch.Tensor:
        c = self.config
        control, x0, prompts = self.batch(step, micro)
        g = step_generator(c.seed, step, micro)
        drop = torch.rand(len(prompts), generator=g) < c.prompt_dropout
        prompts = ["" if d else p for p, d in zip(prompts, drop.tolist())]
        t = self.schedule.sample_timesteps(len(prompts), g).to(self.device)
        noise = torch.randn(x0.shape, generator=g).to(self.device, x0.dtype)
        x_t = self.schedule.add_noise(x0.float(), noise.float(), t)
        context = self.encode_prompts(prompts)
        unet_dtype = self.base.dtype
        residuals = self.net(x_t, control, t, context.float())
        with residuals_added(self.base.unet, [r.to(unet_dtype) for r in residuals]):
            eps = self.base.unet(x_t.to(unet_dtype), t, context.to(unet_dtype))
        return F.mse_loss(eps.float(), noise.float())

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """The frozen text encoder's context per prompt, remembered (up to CONTEXT_CACHE_BYTES) since it never
        changes; a batch's shorter prompts get empty-prompt chunks appended, as the host pads them."""
        out = []
        for p in prompts:
            z = self._contexts.get(p)
            if z is None:
                z = self.base.prompts.encode([p])
                if len(self._contexts) < self._context_cache_entries:
                    self._contexts[p] = z
            out.append(z)
        longest = max(z.shape[1] for z in out)
        if any(z.shape[1] != longest for z in out):
            empty = self.encode_prompts([""])
            out = [torch.cat([z, empty.repeat(1, (longest - z.shape[1]) // empty.shape[1], 1)], dim=1) for z in out]
        return torch.cat(out)

    # --- outputs --------------------------------------------------------------------------------------
    def write_controlnet(self, path: Path, step: int) -> None:
        dtype = torch.float16 if self.config.save_dtype == "fp16" else torch.float32
        tensors = {k: v.cpu() for k, v in controlnet_state_dict(self.net, dtype).items()}
        meta = {METADATA_KEY: json.dumps({"base": self.config.base.name, "step": step,
                                          "resolution": self.config.resolution}, sort_keys=True)}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)

    def on_save(self, step: int) -> None:
        self.write_controlnet(self.config.output, step)
        if self.config.snapshots:
            self.write_controlnet(self.config.work_dir / "snapshots" / f"step_{step:06d}.safetensors", step)

    def sample_model(self):
        """The ControlNet as it is now, as a host would load it (a frozen copy; training goes on)."""
        from lib_controlnet.kinds.controlnet import ControlModel

        net = copy.deepcopy(self.net).to(self.base.dtype)
        return ControlModel(net, family="sd1", path=self.config.output, format="ldm-controlnet",
                            global_average_pooling=False)

    def on_sample(self, step: int) -> None:
        """A grid row per sample pair: control map, generation with the ControlNet, the target."""
        from lib_controlnet import BoundUnit
        from standalone import GenerationRequest, Pipeline

        c = self.config
        model = self.sample_model()
        pipeline = Pipeline(self.base)
        rows = []
        self.net.eval()
        try:
            for k in range(min(c.sample_count, len(self.data))):
                control, target, prompt = self.data[k]
                unit = BoundUnit(model, control[None])
                result = pipeline.generate(GenerationRequest(
                    prompt=prompt, width=c.resolution, height=c.resolution, steps=c.sample_steps,
                    cfg_scale=c.sample_cfg, seed=c.seed + k, units=[unit]))
                pictures = [(control.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8),
                            np.asarray(result.images[0]),
                            ((target.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)]
                rows.append(np.concatenate(pictures, axis=1))
        finally:
            self.net.train()
        path = c.work_dir / "samples" / f"step_{step:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.concatenate(rows, axis=0)).save(path)

    # --- the run --------------------------------------------------------------------------------------
    def train(self) -> Path:
        c = self.config
        self.loop.continue_saved(c.resume)
        if c.cache_latents:
            self.cache_latents()
        if self.loop.step >= c.steps:
            self.on_save(self.loop.step)
            return c.output
        self.loop.run(self.micro_loss, on_save=self.on_save, on_sample=self.on_sample)
        return c.output


def train_controlnet(config: ControlNetTraining) -> Path:
    return ControlNetTrainer(config).train()


def _jsonable_config(config: ControlNetTraining) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
