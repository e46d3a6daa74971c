"""Hires fix (txt2img's second pass), as A1111 1.10 runs it.

The first pass's latents are upscaled to the target size - in latent space (the "Latent ..." upscalers:
`F.interpolate`, A1111's default "Latent" is bilinear without antialiasing) or in pixels (decode, resize, encode
again: "Lanczos", "Nearest", "None" = Lanczos) - cropped when both target sides were given with another aspect
ratio, then denoised again like img2img with fresh noise from the same seeds. The second pass runs exactly
`steps` (hr_second_pass_steps, else the first pass's count) steps of a schedule of int(steps / strength)
(A1111's `setup_img2img_steps` when a step count is given), so ControlNet's progress fraction restarts at 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image

from lib_controlnet.errors import GENERATION, InputError

from .sampling import Plan

OPT_F = 8  # latent downscale factor
LATENT_UPSCALERS = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
PIXEL_UPSCALERS = {"None": Image.LANCZOS, "Lanczos": Image.LANCZOS, "Nearest": Image.NEAREST}
DEFAULT_UPSCALER = "Latent"  # A1111's latent_upscale_default_mode, used when hr_upscaler is not given


def upscaler_names() -> list[str]:
    return [*LATENT_UPSCALERS, *PIXEL_UPSCALERS]


@dataclass(frozen=True)
class HiresFix:
    scale: float = 2.0
    resize_x: int = 0  # target width (0: from scale or the other side)
    resize_y: int = 0
    upscaler: str | None = None  # None: "Latent"
    steps: int = 0  # 0: the first pass's steps
    denoising_strength: float = 0.7
    sampler_name: str | None = None  # None: the first pass's
    scheduler: str | None = None
    prompt: str = ""  # "": the first pass's prompt
    negative_prompt: str = ""

    @property
    def upscaler_name(self) -> str:
        return self.upscaler or DEFAULT_UPSCALER

    def validate(self) -> None:
        if self.upscaler_name not in LATENT_UPSCALERS and self.upscaler_name not in PIXEL_UPSCALERS:
            raise InputError(f"upscaler {self.upscaler_name!r} is not available in the standalone host (available: "
                             f"{', '.join(upscaler_names())})", field="hr_upscaler", subject=GENERATION)
        if not 0.0 <= self.denoising_strength <= 1.0:
            raise InputError(f"denoising_strength must be in [0, 1], got {self.denoising_strength}",
                             field="denoising_strength", subject=GENERATION)
        if self.resize_x < 0 or self.resize_y < 0:
            raise InputError("hr_resize_x and hr_resize_y must be >= 0", field="hr_resize_x", subject=GENERATION)
        if not self.resize_x and not self.resize_y and not 1.0 <= self.scale <= 8.0:
            raise InputError(f"hr_scale must be between 1 and 8, got {self.scale}", field="hr_scale",
                             subject=GENERATION)
        if not 0 <= self.steps <= 1000:
            raise InputError(f"hr_second_pass_steps must be between 0 and 1000, got {self.steps}",
                             field="hr_second_pass_steps", subject=GENERATION)

    def target(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(upscale_to_x, upscale_to_y, truncate_x, truncate_y) in pixels and latent cells: A1111's
        `calculate_target_resolution`."""
        rx, ry = self.resize_x, self.resize_y
        if not rx and not ry:
            return int(width * self.scale), int(height * self.scale), 0, 0
        if not ry:
            return rx, rx * height // width, 0, 0
        if not rx:
            return ry * width // height, ry, 0, 0
        if width / height < rx / ry:
            to_x, to_y = rx, rx * height // width
        else:
            to_x, to_y = ry * width // height, ry
        return to_x, to_y, (to_x - rx) // OPT_F, (to_y - ry) // OPT_F

    def infotext(self, first_pass_sampler: str) -> dict[str, object]:
        """A1111's entries (Denoising strength comes first, as A1111 sets it in init)."""
        params: dict[str, object] = {"Denoising strength": self.denoising_strength}
        if self.resize_x or self.resize_y:
            params["Hires resize"] = f"{self.resize_x}x{self.resize_y}"
        else:
            params["Hires upscale"] = self.scale
        if self.steps:
            params["Hires steps"] = self.steps
        if self.upscaler is not None:
            params["Hires upscaler"] = self.upscaler
        if self.sampler_name and self.sampler_name != first_pass_sampler:
            params["Hires sampler"] = self.sampler_name
        return params


def hires_plan(steps: int, denoising_strength: float) -> Plan | None:
    """`steps` steps at the end of a schedule of int(steps / min(strength, 0.999)); None at strength 0 (A1111
    would make an empty schedule: the upscaled first pass is returned as it is)."""
    if denoising_strength <= 0:
        return None
    total = int(steps / min(denoising_strength, 0.999))
    return Plan(total, total - steps)


def upscale_latents(latents: torch.Tensor, mode: str, antialias: bool, width: int, height: int) -> torch.Tensor:
    return F.interpolate(latents, size=(height // OPT_F, width // OPT_F), mode=mode, antialias=antialias)


def truncate(latents: torch.Tensor, truncate_x: int, truncate_y: int) -> torch.Tensor:
    """A1111's centred crop of the latent when the target aspect ratio differs."""
    h, w = latents.shape[-2:]
    return latents[..., truncate_y // 2 : h - (truncate_y + 1) // 2, truncate_x // 2 : w - (truncate_x + 1) // 2]
