"""The optimisation loop every trainer here shares: AdamW, gradient accumulation, precision, progress, resume.

`run(params, micro_loss, config, ...)` takes optimizer steps until `config.steps`; each step sums
`grad_accum` micro-batches, whose losses come from `micro_loss(step, micro)`. Every input a micro-batch draws
(data order, noise, timesteps) must come from `step_generator(seed, step, micro)`: then a resumed run takes
exactly the steps the uninterrupted one would have taken.

Precision: fp32 on a CPU; on a GPU "auto" is mixed precision (bf16 autocast where the GPU has it, else fp16
autocast with a gradient scaler); trained weights and optimizer state stay float32 either way.

The work folder holds the state to resume from, written atomically every `save_every` steps and at the end:
`state/weights.safetensors` (float32), `state/optimizer.pt` (optimizer and scaler state, read back with
`torch.load(weights_only=True)`), `state/progress.json` (step, loss, the config it ran with).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lib_controlnet.errors import InputError
from lib_controlnet.models.files import load_weights_only

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


@dataclass
class LoopConfig:
    steps: int
    lr: float
    work_dir: Path
    grad_accum: int = 1
    weight_decay: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float | None = 1.0
    warmup_steps: int = 0
    cosine_decay: bool = False  # after the warm-up, decay the rate to min_lr_ratio x lr along a cosine
    min_lr_ratio: float = 0.1
    seed: int = 0
    save_every: int = 500
    sample_every: int = 0  # 0: never
    precision: str = "auto"
    description: str = "training"
    extra: dict = field(default_factory=dict)  # recorded in progress.json (what the run was)

    def __post_init__(self):
        self.work_dir = Path(self.work_dir)
        if self.steps < 1 or self.grad_accum < 1:
            raise InputError("steps and grad_accum must be at least 1", field="steps")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"learning rate must be a positive number, got {self.lr}", field="lr")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}",
                             field="precision")


def step_generator(seed: int, step: int, micro: int = 0, stream: int = 0) -> torch.Generator:
    """The CPU generator for one micro-batch: a pure function of (seed, step, micro, stream)."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) * 1_009 + micro) * 101 + stream)


def resolve_precision(precision: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None for plain fp32, whether a gradient scaler is needed)."""
    if device.type != "cuda":
        if precision in ("fp16", "bf16"):
            raise InputError(f"precision {precision} needs a CUDA device; on {device.type} training runs in fp32",
                             field="precision")
        return None, False
    if precision == "fp32":
        return None, False
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16, False
    return torch.float16, True


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` then rename over `path`: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


class Progress:
    """tqdm's bar with the running loss when stderr is a terminal; a line per interval otherwise (log files)."""

    def __init__(self, total: int, initial: int, description: str, interval_s: float = 30.0):
        self.total, self.step, self.description = total, initial, description
        self.interval_s, self.last = interval_s, 0.0
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=description, dynamic_ncols=True)
        self.started = time.monotonic()
        self.first = initial

    def update(self, step: int, loss: float) -> None:
        self.step = step
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}")
            return
        now = time.monotonic()
        if now - self.last >= self.interval_s or step == self.total:
            self.last = now
            rate = (step - self.first) / max(now - self.started, 1e-9)
            print(f"{self.description}: step {step}/{self.total} loss {loss:.4f} ({rate:.2f} steps/s)",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Loop:
    """Owns the optimizer, the scaler and the state files of one run over `params` (name -> parameter)."""

    def __init__(self, params: Mapping[str, nn.Parameter], config: LoopConfig, device: torch.device,
                 extra_tensors: Mapping[str, torch.Tensor] | None = None):
        self.params = dict(params)
        self.extra_tensors = dict(extra_tensors or {})  # saved and restored with the weights (e.g. an EMA)
        self.config = config
        self.device = device
        self.autocast_dtype, needs_scaler = resolve_precision(config.precision, device)
        decay = [p for n, p in self.params.items() if p.ndim > 1 and not n.endswith("embedding.weight")]
        no_decay = [p for n, p in self.params.items() if not (p.ndim > 1 and not n.endswith("embedding.weight"))]
        groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr, betas=config.betas)
        self.scaler = torch.amp.GradScaler("cuda") if needs_scaler else None
        self.step = 0
        self.last_loss = float("nan")

    # --- state files ----------------------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.config.work_dir / "state"

    def has_state(self) -> bool:
        return (self.state_dir / "progress.json").is_file()

    def save_state(self) -> None:
        weights = {n: p.detach().float().cpu().contiguous() for n, p in self.params.items()}
        weights.update({f"extra.{n}": t.detach().float().cpu().contiguous() for n, t in self.extra_tensors.items()})
        atomic_write(self.state_dir / "weights.safetensors", lambda p: save_file(weights, str(p)))
        optim = {"optimizer": self.optimizer.state_dict(),
                 "scaler": self.scaler.state_dict() if self.scaler is not None else None}
        atomic_write(self.state_dir / "optimizer.pt", lambda p: torch.save(optim, p))
        progress = {"step": self.step, "loss": self.last_loss, "config": _jsonable(asdict(self.config))}
        # written last: a state folder with progress.json is complete
        atomic_write(self.state_dir / "progress.json", lambda p: p.write_text(json.dumps(progress, indent=1)))

    def saved_step(self) -> int:
        return int(json.loads((self.state_dir / "progress.json").read_text())["step"])

    def continue_saved(self, resume: bool, what: str = "a run") -> None:
        """Continue the run saved in the work folder when `resume`; without it, refuse to start over it."""
        if not self.has_state():
            return
        if not resume:
            raise InputError(f"{self.config.work_dir} holds {what} already (step {self.saved_step()}): pass --resume "
                             "to continue it, or choose another work folder", field="work_dir")
        self.load_state()

    def load_state(self) -> None:
        progress = json.loads((self.state_dir / "progress.json").read_text())
        weights = load_file(str(self.state_dir / "weights.safetensors"))
        missing = sorted(set(self.params) - set(weights))
        if missing:
            raise InputError(f"{self.state_dir}: the saved run has no weights for {missing[:3]}: a different "
                             "model or setup; use another work folder", field="resume")
        with torch.no_grad():
            for n, p in self.params.items():
                if tuple(weights[n].shape) != tuple(p.shape):
                    raise InputError(f"{self.state_dir}: saved {n} has shape {tuple(weights[n].shape)}, the model "
                                     f"{tuple(p.shape)}", field="resume")
                p.copy_(weights[n])
            for n, t in self.extra_tensors.items():
                t.copy_(weights[f"extra.{n}"])
        optim = load_weights_only(self.state_dir / "optimizer.pt", map_location=self.device)
        self.optimizer.load_state_dict(optim["optimizer"])
        if self.scaler is not None and optim.get("scaler"):
            self.scaler.load_state_dict(optim["scaler"])
        self.step = int(progress["step"])
        self.last_loss = float(progress.get("loss", float("nan")))

    # --- the loop -------------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        cfg = self.config
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        if not cfg.cosine_decay:
            return cfg.lr
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

    def run(
        self,
        micro_loss: Callable[[int, int], torch.Tensor],
        *,
        on_save: Callable[[int], None] | None = None,
        on_sample: Callable[[int], None] | None = None,
        on_step: Callable[[int], None] | None = None,
    ) -> float:
        """Train from self.step to config.steps; returns the last step's loss."""
        cfg = self.config
        progress = Progress(cfg.steps, self.step, cfg.description)
        params = [p for p in self.params.values() if p.requires_grad]
        try:
            while self.step < cfg.steps:
                for group in self.optimizer.param_groups:
                    group["lr"] = self.lr_at(self.step)
                total = 0.0
                for micro in range(cfg.grad_accum):
                    with autocast(self.device, self.autocast_dtype):
                        loss = micro_loss(self.step, micro) / cfg.grad_accum
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"step {self.step}: the loss is {loss.item()}; lower the learning "
                                                 "rate or use fp32")
                    (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
                    total += float(loss.detach())
                if self.scaler is not None:
                    self.scaler.unscale_(self.optimizer)
                if cfg.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                if self.scaler is not None:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                self.last_loss = total
                if on_step is not None:
                    on_step(self.step)
                progress.update(self.step, total)
                if cfg.sample_every and on_sample is not None and self.step % cfg.sample_every == 0:
                    on_sample(self.step)
                if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                    self.save_state()
                    if on_save is not None:
                        on_save(self.step)
        finally:
            progress.close()
        return self.last_loss


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
