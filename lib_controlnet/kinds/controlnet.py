"""The plain ControlNet kind: its runtime model (`ControlModel`) and its builder.

Original (ldm) files, diffusers files converted to ldm names, and "difference" files (merged with the host
UNet's weights) all end up here; the unit that drives it in the hook is `controlnet_unit.BoundUnit`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelFileError
from ..models.conversion.difference import merge_difference
from ..models.detection import Detection
from ..models.files import RawModel
from ..models.networks.controlnet import ControlNet
from . import register
from .controlnet_unit import BoundUnit

FAMILIES = ("sd1", "sd2", "sdxl")


class ControlModel:
    """Callable as `model(x, hint, timesteps, context, y=None)` -> list of residuals (13, or 10 for SDXL).

    `hint` is NCHW in [0, 1] at 8x the latent size. Inputs are cast to the network's device and dtype and
    the residuals come back in `x`'s dtype, so the host UNet's precision rules.
    """

    kind = "controlnet"

    def __init__(
        self, net: ControlNet, *, family: str, path: Path, format: str, global_average_pooling: bool, variant: str = "",
        depends_on_base: bool = False,
    ):
        self.net = net.eval().requires_grad_(False)
        self.family = family
        self.variant = variant  # SDXL "full"/"mid"/"small"
        self.path = path
        self.format = format
        self.global_average_pooling = global_average_pooling
        # built with the host UNet's weights (a difference model): the model cache reloads it when they change
        self.depends_on_base = depends_on_base

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}({self.path.name!r}, kind={self.kind}, family={self.family}, format={self.format})"

    @property
    def num_outputs(self) -> int:
        return self.net.num_outputs

    @property
    def hint_channels(self) -> int:
        return self.net.arch.hint_channels

    @property
    def in_channels(self) -> int:
        return self.net.arch.in_channels

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> ControlModel:
        if (device is None or torch.device(device) == self.device) and (dtype is None or dtype == self.dtype):
            return self
        self.net.to(device=device, dtype=dtype)
        return self

    def parameter_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.net.parameters())

    def describe(self) -> str:
        """One line for `python -m lib_controlnet`."""
        arch = self.net.arch
        variant = f" ({self.variant})" if self.variant else ""
        return (
            f"{self.kind}, {self.family}{variant}, format {self.format}, {self.num_outputs} residuals, "
            f"{sum(p.numel() for p in self.net.parameters()) / 1e6:.1f} M params in {self.dtype}, "
            f"hint {arch.hint_channels} ch, context {arch.context_dim}, "
            f"{'pooled (shuffle)' if self.global_average_pooling else 'spatial'} residuals"
        )

    def encode_hint(self, hint: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net.encode_hint(hint.to(self.device, self.dtype))

    @torch.no_grad()
    def __call__(
        self,
        x: torch.Tensor,
        hint: torch.Tensor | None,
        timesteps: torch.Tensor,
        context: torch.Tensor | None,
        y: torch.Tensor | None = None,
        *,
        guided_hint: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        device, dtype = self.device, self.dtype

        def cast(t):
            return None if t is None else t.to(device, dtype)

        outs = self.net(
            cast(x[:, : self.in_channels]),  # 9-channel inpainting UNets: the ControlNet sees the latent only
            cast(hint),
            timesteps.to(device),
            cast(context),
            cast(y),
            guided_hint=cast(guided_hint),
        )
        return [o.to(x.device, x.dtype) for o in outs]


@register("controlnet", unit=BoundUnit)
def build_controlnet(det: Detection, raw: RawModel, base_unet: Mapping[str, torch.Tensor] | None) -> ControlModel:
    name = raw.path.name
    state = {det.key_map[k]: raw.state_dict[k] for k in det.key_map}
    if det.is_difference:
        state = merge_difference(state, base_unet, name=name)
    state = one_float_dtype(state)

    net = fill_network(lambda: ControlNet(det.arch), state, name=name, what=f"{det.family} ControlNet")

    # Content-shuffle models need global average pooling. Nothing in their weights says so: diffusers
    # configs have a flag, original files only their name (the same signal the reference uses).
    gap = bool(raw.config.get("global_pool_conditions")) or "shuffle" in raw.path.stem.lower()
    return ControlModel(
        net, family=det.family, path=raw.path, format=det.format, global_average_pooling=gap, variant=det.variant,
        depends_on_base=det.is_difference,
    )


def fill_network(make: Callable[[], nn.Module], state: dict[str, torch.Tensor], *, name: str, what: str) -> nn.Module:
    """`make()` built on the meta device and filled with assign=True: the file's tensors become the parameters,
    so the weights exist in memory once (no random init, no second copy)."""
    with torch.device("meta"):
        net = make()
    expected = set(net.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ModelFileError(
            f"{name}: keys do not fit a {what} "
            f"(missing {len(missing)}: {', '.join(missing[:6])}; unexpected {len(unexpected)}: "
            f"{', '.join(unexpected[:6])})"
        )
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise ModelFileError(f"{name}: tensor shapes do not fit the detected architecture ({e})") from e
    return net


def one_float_dtype(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Files occasionally mix fp16 and fp32 tensors; the network runs in one dtype (the most common)."""
    counts: dict[torch.dtype, int] = {}
    for t in state.values():
        if t.is_floating_point():
            counts[t.dtype] = counts.get(t.dtype, 0) + t.numel()
    if len(counts) <= 1:
        return state
    dtype = max(counts, key=counts.get)
    return {k: t.to(dtype) if t.is_floating_point() else t for k, t in state.items()}
