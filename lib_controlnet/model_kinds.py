"""The model-kind registry: each kind turns a detected state dict into a runnable model.

`detection.FORMAT_RULES` says which kind claims a state dict; `BUILDERS[kind]` builds it. A new kind
(T2I-Adapter, Control-LoRA...) adds a rule there and a builder here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from .control_model import ControlModel
from .conversion.difference import merge_difference
from .detection import Detection
from .errors import ModelFileError
from .model_files import RawModel
from .networks.controlnet import ControlNet

Builder = Callable[[Detection, RawModel, "Mapping[str, torch.Tensor] | None"], ControlModel]
BUILDERS: dict[str, Builder] = {}


def register(kind: str):
    def wrap(fn: Builder) -> Builder:
        BUILDERS[kind] = fn
        return fn

    return wrap


@register("controlnet")
def build_controlnet(det: Detection, raw: RawModel, base_unet: Mapping[str, torch.Tensor] | None) -> ControlModel:
    name = raw.path.name
    state = {det.key_map[k]: raw.state_dict[k] for k in det.key_map}
    if det.is_difference:
        state = merge_difference(state, base_unet, name=name)
    state = _one_float_dtype(state)

    # Built on the meta device and filled with assign=True: the file's tensors become the parameters,
    # so the weights exist in memory once (no random init, no second copy).
    with torch.device("meta"):
        net = ControlNet(det.arch)
    expected = set(net.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ModelFileError(
            f"{name}: keys do not fit a {det.family} ControlNet "
            f"(missing {len(missing)}: {', '.join(missing[:6])}; unexpected {len(unexpected)}: "
            f"{', '.join(unexpected[:6])})"
        )
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise ModelFileError(f"{name}: tensor shapes do not fit the detected architecture ({e})") from e

    # Content-shuffle models need global average pooling. Nothing in their weights says so: diffusers
    # configs have a flag, original files only their name (the same signal the reference uses).
    gap = bool(raw.config.get("global_pool_conditions")) or "shuffle" in raw.path.stem.lower()
    return ControlModel(
        net, family=det.family, path=raw.path, format=det.format, global_average_pooling=gap, variant=det.variant,
        depends_on_base=det.is_difference,
    )


def _one_float_dtype(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Files occasionally mix fp16 and fp32 tensors; the network runs in one dtype (the most common)."""
    counts: dict[torch.dtype, int] = {}
    for t in state.values():
        if t.is_floating_point():
            counts[t.dtype] = counts.get(t.dtype, 0) + t.numel()
    if len(counts) <= 1:
        return state
    dtype = max(counts, key=counts.get)
    return {k: t.to(dtype) if t.is_floating_point() else t for k, t in state.items()}
