"""A new ControlNet for a base UNet, initialised as the paper does (Zhang et al. 2023, §3.1-3.2).

The trainable copy is the base UNet's encoder (`time_embed`, `input_blocks`, `middle_block`) with the base's
weights; the hint encoder (`input_hint_block`, a small conv stack from the control image to the latent size)
starts random except its last conv; every zero convolution (`zero_convs.*`, `middle_block_out`) and that last
hint conv start at exactly zero, so before training the ControlNet adds nothing and the base is unchanged.
The network is the one every host builds from a file (`lib_controlnet.models.networks.controlnet`), with the
attention head split the loader uses for the family, so the trained file loads back to the same network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import torch
from torch import nn

from lib_controlnet.models.detection import FAMILY_RULES
from lib_controlnet.models.networks.arch import arch_from_shapes
from lib_controlnet.models.networks.controlnet import ControlNet

# cldm_v15.yaml's hint encoder: conv widths after the 3-channel input, before the last (zero) conv
PUBLISHED_HINT_WIDTHS = (16, 16, 32, 32, 96, 96, 256)
COPIED_PREFIXES = ("time_embed.", "input_blocks.", "middle_block.")


def zero_parameter_names(net: ControlNet) -> list[str]:
    """Parameters the paper initialises to zero: the zero convs, the middle output conv, the last hint conv."""
    last_hint = max(i for i, m in enumerate(net.input_hint_block) if isinstance(m, nn.Conv2d))
    prefixes = ("zero_convs.", "middle_block_out.", f"input_hint_block.{last_hint}.")
    return [name for name, _ in net.named_parameters() if name.startswith(prefixes)]


def controlnet_from_unet(
    unet_state: Mapping[str, torch.Tensor],
    *,
    hint_widths: tuple[int, ...] = PUBLISHED_HINT_WIDTHS,
    hint_channels: int = 3,
    seed: int = 0,
) -> ControlNet:
    """A ControlNet whose encoder is a float32 copy of `unet_state` (ldm UNet keys, no prefix)."""
    if len(hint_widths) != 7:
        raise ValueError(f"the ldm hint encoder has 7 convs before its last one (3 of them stride 2), got "
                         f"{len(hint_widths)} widths")
    shapes = {k: tuple(v.shape) for k, v in unet_state.items() if k.startswith(COPIED_PREFIXES)}
    if "input_blocks.0.0.weight" not in shapes:
        raise ValueError("not an ldm UNet state dict (no input_blocks.0.0.weight)")
    model_channels = shapes["input_blocks.0.0.weight"][0]
    widths = (hint_channels, *hint_widths, model_channels)
    for i in range(len(widths) - 1):
        shapes[f"input_hint_block.{2 * i}.weight"] = (widths[i + 1], widths[i], 3, 3)
        shapes[f"input_hint_block.{2 * i}.bias"] = (widths[i + 1],)
    arch = arch_from_shapes(shapes)
    family = next(r for r in FAMILY_RULES if r.matches(arch))
    arch = replace(arch, **family.heads)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ControlNet(arch)
    own = net.state_dict()
    copied = {k: unet_state[k].detach().float().clone() for k in own if k.startswith(COPIED_PREFIXES)}
    missing = [k for k in own if k.startswith(COPIED_PREFIXES) and k not in unet_state]
    if missing:
        raise ValueError(f"the base UNet lacks {len(missing)} encoder weights, e.g. {missing[:3]}")
    net.load_state_dict(copied, strict=False)
    with torch.no_grad():
        params = dict(net.named_parameters())
        for name in zero_parameter_names(net):
            params[name].zero_()
    return net


def controlnet_state_dict(net: ControlNet, dtype: torch.dtype | None = torch.float16) -> dict[str, torch.Tensor]:
    """The network in the original file layout (`control_model.*`), as the published .safetensors have it."""
    return {
        "control_model." + k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
        for k, v in net.state_dict().items()
    }
