"""The Control-LoRA kind (Stability `control-lora-*`): a ControlNet made of the live host UNet's weights plus a
low-rank update, built when a checkpoint is loaded and rebuilt when it changes (`depends_on_base`).

It runs exactly like a ControlNet (same residuals, same unit: `controlnet_unit.BoundUnit`); only its
weights come from elsewhere (`models/networks/control_lora.py`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..errors import IncompatibleModelError, ModelFileError
from ..models.conversion.control_lora import split_control_lora
from ..models.detection import Detection
from ..models.files import RawModel
from ..models.networks.control_lora import bind_base_weights
from ..models.networks.controlnet import ControlNet
from . import register
from .controlnet import ControlModel, one_float_dtype
from .controlnet_unit import BoundUnit


class ControlLoraModel(ControlModel):
    """Callable like a ControlNet: `model(x, hint, timesteps, context, y=None)` -> residuals.

    Its own parameters (`parameter_bytes`) are the file's tensors; every other weight is read from the host
    UNet at call time.
    """

    kind = "control_lora"

    def describe(self) -> str:
        arch = self.net.arch
        rank = next((m.lora_down.shape[0] for m in self.net.modules() if hasattr(m, "lora_down")), 0)
        return (f"{self.kind}, {self.family}, format {self.format}, rank {rank}, {self.num_outputs} residuals, "
                f"{self.parameter_bytes() / 2**20:.1f} MiB of its own in {self.dtype} (the rest is the host UNet's), "
                f"hint {arch.hint_channels} ch, context {arch.context_dim}")


@register("control_lora", unit=BoundUnit)
def build_control_lora(det: Detection, raw: RawModel, base_unet: Mapping[str, torch.Tensor] | None) -> ControlLoraModel:
    name = raw.path.name
    what = f"{name} ({det.family} Control-LoRA)"
    if base_unet is None:
        raise IncompatibleModelError(f"{what} is built from the host UNet's weights: load it onto a checkpoint "
                                     "(pass base_unet)")
    state = one_float_dtype({det.key_map[k]: raw.state_dict[k] for k in det.key_map})
    own, pairs = split_control_lora(state)

    with torch.device("meta"):
        net = ControlNet(det.arch)
    expected = {k: v.shape for k, v in net.state_dict().items()}
    unexpected = sorted(set(own) - set(expected)) + sorted(set(pairs) - set(expected))
    if unexpected:
        raise ModelFileError(f"{what}: keys that fit no ControlNet layer ({len(unexpected)}: "
                             f"{', '.join(unexpected[:6])})")
    for key, (up, down) in pairs.items():
        if up.shape[1] != down.shape[0] or up.shape[0] * down[0].numel() != expected[key].numel():
            raise ModelFileError(f"{what}: LoRA pair of '{key}' has shapes {tuple(up.shape)} / {tuple(down.shape)}")
    try:
        net.load_state_dict(own, strict=False, assign=True)
    except RuntimeError as e:
        raise ModelFileError(f"{what}: tensor shapes do not fit the detected architecture ({e})") from e
    bind_base_weights(net, expected, pairs, base_unet, what=what)
    return ControlLoraModel(net, family=det.family, path=raw.path, format=det.format, global_average_pooling=False,
                            variant=det.variant, depends_on_base=True)
