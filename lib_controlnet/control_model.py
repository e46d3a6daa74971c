"""A loaded control model: the network plus what the hook needs to know about it."""

from __future__ import annotations

from pathlib import Path

import torch

from .networks.controlnet import ControlNet

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
        return f"ControlModel({self.path.name!r}, kind={self.kind}, family={self.family}, format={self.format})"

    @property
    def num_outputs(self) -> int:
        return self.net.num_outputs

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
