"""What a generation is asked for and what it returns (field names follow A1111's API where one exists)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from PIL import Image

from lib_controlnet.controls import NoiseModifier, PixelPost
from lib_controlnet.hook.effect import Effect

from .hires import HiresFix


@dataclass
class GenerationRequest:
    prompt: str = ""
    negative_prompt: str = ""
    width: int = 512  # the model's native size is `StableDiffusionModel.default_size`
    height: int = 512
    steps: int = 20
    cfg_scale: float = 7.0
    sampler_name: str = "Euler"
    scheduler: str = "Automatic"  # schedule type (A1111 1.9+): Automatic, Uniform, Karras
    seed: int = -1  # -1: a random seed, reported in the result
    batch_size: int = 1
    n_iter: int = 1  # batch count: batches run one after another, seeds continue
    clip_skip: int = 1
    # img2img (when init_images is set)
    init_images: list[Image.Image] = field(default_factory=list)
    denoising_strength: float = 0.75
    mask: Image.Image | None = None  # white = repaint
    mask_blur: int = 4
    inpainting_mask_invert: bool = False
    # ControlNet units as the hook applies them (lib_controlnet.generation.hook_effects)
    units: list[Effect] = field(default_factory=list)
    # pixel post-processes of the units, run on each decoded image ([3, H, W] in [0, 1], its index)
    post_process: list[PixelPost] = field(default_factory=list)
    # noise modifiers of the units (inpaint_only+lama), run on the initial noise: (noise, HostInfo) -> noise
    initial_noise: list[NoiseModifier] = field(default_factory=list)
    # txt2img: hires fix's second pass (None: off)
    hires: HiresFix | None = None
    # extra infotext entries the host adds (e.g. "ControlNet 0": "Module: canny, ...")
    extra_generation_params: dict[str, object] = field(default_factory=dict)

    @property
    def is_img2img(self) -> bool:
        return bool(self.init_images)


@dataclass(frozen=True)
class StepProgress:
    """Reported after every sampling step: enough for A1111's /sdapi/v1/progress."""

    step: int  # steps done in this batch (1-based)
    steps: int  # steps in this batch's pass
    batch: int  # which batch (0-based) of n_iter
    batches: int

    @property
    def fraction(self) -> float:
        """Progress of the whole job in [0, 1]."""
        return (self.batch + self.step / max(self.steps, 1)) / max(self.batches, 1)


@dataclass
class GenerationResult:
    images: list[Image.Image]
    seeds: list[int]
    infotexts: list[str]
    parameters: dict[str, object]  # the resolved request (seed filled in, sampler canonical), for the API's "info"
    latents: torch.Tensor  # final scaled latents of every image, before decoding (previews, tests)
    interrupted: bool = False
    is_demo: bool = False
    warnings: list[str] = field(default_factory=list)  # plain-language notes every consumer should show
