"""The T2I-Adapter kinds: full/light adapters (encoder features) and the style adapter (context tokens).

An adapter sees neither the latent, the timestep nor the text: its features depend on the hint alone, so
units compute them once per hint size (`t2i_adapter_unit`) and add them to the UNet's encoder stream at
every step. The style adapter turns CLIP-L image tokens into extra text-context tokens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F

from ..hook.call import MIDDLE
from ..models.detection import Detection
from ..models.files import RawModel
from ..models.networks.t2i_adapter import StyleAdapter, build_adapter
from . import register
from .controlnet import fill_network, one_float_dtype
from .t2i_adapter_unit import AdapterUnit, StyleUnit

# Where the 4 features go: after these input blocks (MIDDLE: after the middle block), as the reference does.
SD_POINTS = (2, 5, 8, 11)
SDXL_POINTS = (3, 5, 8, MIDDLE)


class _Weights:
    """What both adapter kinds share: the network, where it lives, and what it is."""

    global_average_pooling = False
    depends_on_base = False
    variant = ""

    def __init__(self, net: torch.nn.Module, *, family: str, path: Path, format: str):
        self.net = net.eval().requires_grad_(False)
        self.family = family
        self.path = path
        self.format = format

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}({self.path.name!r}, kind={self.kind}, family={self.family}, format={self.format})"

    @property
    def arch(self):
        return self.net.arch

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        if (device is None or torch.device(device) == self.device) and (dtype is None or dtype == self.dtype):
            return self
        self.net.to(device=device, dtype=dtype)
        return self

    def parameter_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.net.parameters())

    def params_m(self) -> float:
        return sum(p.numel() for p in self.net.parameters()) / 1e6


class T2IAdapterModel(_Weights):
    """Callable as `model(x, hint, timesteps, context)` -> the feature list (what diffusers' `T2IAdapter(hint)`
    returns); x, timesteps and context are accepted for a ControlNet-like signature and not used.

    `hint` is NCHW in [0, 1] at 8x the latent size; 3-channel maps are fine for grey adapters (they read
    channel 0, as the reference), and sizes that are no multiple of the pixel-unshuffle factor (16 for SDXL)
    are resized up to the next multiple.
    """

    kind = "t2i_adapter"
    hint_channels = 3  # what units hand over: RGB maps (grey adapters take channel 0)

    @property
    def num_outputs(self) -> int:
        return len(self.arch.channels)

    @property
    def in_channels(self) -> int:
        """The channels the network itself reads (1 for grey adapters)."""
        return self.arch.in_channels

    @property
    def injection_points(self) -> tuple[int, ...]:
        return SDXL_POINTS if self.arch.is_sdxl else SD_POINTS

    def prepare_hint(self, hint: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 1 and hint.shape[1] != 1:
            hint = hint[:, :1]
        factor = self.arch.unshuffle
        h, w = hint.shape[-2:]
        size = (math.ceil(h / factor) * factor, math.ceil(w / factor) * factor)
        if size != (h, w):
            hint = F.interpolate(hint.float(), size=size, mode="bilinear", align_corners=False)
        return hint

    @torch.no_grad()
    def features(self, hint: torch.Tensor) -> list[torch.Tensor]:
        """The features, in the network's device and dtype."""
        return self.net(self.prepare_hint(hint).to(self.device, self.dtype))

    def __call__(self, x: torch.Tensor | None, hint: torch.Tensor, timesteps=None, context=None, y=None
                 ) -> list[torch.Tensor]:
        like = hint if x is None else x
        return [f.to(like.device, like.dtype) for f in self.features(hint)]

    def describe(self) -> str:
        arch = self.arch
        grey = "grey (channel 0)" if arch.in_channels == 1 else "RGB"
        return (f"{self.kind} ({arch.layout}), {self.family}, format {self.format}, {self.num_outputs} features "
                f"{list(arch.channels)} after blocks {list(self.injection_points)}, {self.params_m():.1f} M params "
                f"in {self.dtype}, hint {grey}, pixel-unshuffle {arch.unshuffle}")


class T2IStyleModel(_Weights):
    """Callable as `model(x, image_tokens, timesteps, context)` -> context tokens [N, 8, context_dim], from
    CLIP-L vision `last_hidden_state` [N, 257, 1024] (the `t2ia_style_clipvision` preprocessor's output)."""

    kind = "t2i_style_adapter"

    @property
    def num_tokens(self) -> int:
        return self.arch.num_tokens

    @property
    def token_width(self) -> int:
        return self.arch.width

    @torch.no_grad()
    def tokens(self, image_tokens: torch.Tensor) -> torch.Tensor:
        return self.net(image_tokens.to(self.device, self.dtype))

    def __call__(self, x, image_tokens: torch.Tensor, timesteps=None, context=None, y=None) -> torch.Tensor:
        like = image_tokens if context is None else context
        return self.tokens(image_tokens).to(like.device, like.dtype)

    def describe(self) -> str:
        arch = self.arch
        return (f"{self.kind}, {self.family}, format {self.format}, {arch.num_tokens} context tokens of "
                f"{arch.context_dim} from CLIP image tokens of {arch.width}, {self.params_m():.1f} M params "
                f"in {self.dtype}")


def _state(det: Detection, raw: RawModel) -> dict[str, torch.Tensor]:
    return one_float_dtype({det.key_map[k]: raw.state_dict[k] for k in det.key_map})


@register("t2i_adapter", unit=AdapterUnit)
def build_t2i_adapter(det: Detection, raw: RawModel, base_unet: Mapping[str, torch.Tensor] | None) -> T2IAdapterModel:
    arch = det.arch
    net = fill_network(lambda: build_adapter(arch), _state(det, raw), name=raw.path.name,
                         what=f"{det.family} T2I-Adapter ({arch.layout})")
    return T2IAdapterModel(net, family=det.family, path=raw.path, format=det.format)


@register("t2i_style_adapter", unit=StyleUnit)
def build_t2i_style(det: Detection, raw: RawModel, base_unet: Mapping[str, torch.Tensor] | None) -> T2IStyleModel:
    net = fill_network(lambda: StyleAdapter(det.arch), _state(det, raw), name=raw.path.name,
                         what="T2I style adapter")
    return T2IStyleModel(net, family=det.family, path=raw.path, format=det.format)
