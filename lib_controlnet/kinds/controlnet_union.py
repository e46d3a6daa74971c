"""The ControlNet Union / ProMax kind (xinsir SDXL): its runtime model and its builder.

`UnionModel` is a `ControlModel` whose network has the task-fusion head (`networks.controlnet_union`); the
unit that drives it, and fuses several units of one model into one forward, is `union_unit.UnionUnit`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..errors import InputError, ModelFileError
from ..models.detection import Detection
from ..models.files import RawModel
from ..models.networks.controlnet_union import ControlNetUnion, UnionSpec
from . import register
from .controlnet import ControlModel, fill_network, one_float_dtype
from .union_unit import UnionUnit


class UnionModel(ControlModel):
    """Callable as `model(x, [hint, ...], timesteps, context, y, control_types=[slot, ...])` -> 10 residuals.

    Slots are `enums.UnionControlType` indices (0 OpenPose ... 5 Segmentation; ProMax adds 6 Tile, 7 Inpaint).
    `scales` (several hints only) weighs each hint inside the forward, as diffusers' `conditioning_scale`; one
    hint's weight is the caller's to apply to the residuals. No control type with one hint is the reference's
    "Unknown": no task slot, the encoded hint alone.
    """

    kind = "controlnet_union"

    @property
    def num_control_type(self) -> int:
        return self.net.spec.num_control_type

    def check_types(self, control_types: Sequence[int]) -> None:
        for slot in control_types:
            if not 0 <= int(slot) < self.num_control_type:
                raise InputError(f"control type {slot} is not one of this model's {self.num_control_type} task slots "
                                 f"(0-{self.num_control_type - 1})", field="union_control_type")

    def fuse(self, conditions: Sequence[torch.Tensor], control_types: Sequence[int],
             scales: Sequence[float] | None = None, rows: int | None = None) -> torch.Tensor:
        """The guided hint for encoded hints (`encode_hint`'s outputs): see `ControlNetUnion.fuse`."""
        self.check_types(control_types)
        with torch.no_grad():
            return self.net.fuse(conditions, control_types, scales, rows)

    @torch.no_grad()
    def __call__(self, x, hints: Sequence[torch.Tensor] | torch.Tensor | None, timesteps, context, y=None, *,
                 control_types: Sequence[int] = (), scales: Sequence[float] | None = None,
                 guided_hint: torch.Tensor | None = None) -> list[torch.Tensor]:
        control_types = [int(t) for t in control_types]
        hint_scale = None
        if guided_hint is None:
            hints = [hints] if isinstance(hints, torch.Tensor) else list(hints or ())
            if not hints:
                raise ValueError("a union model needs at least one hint")
            guided_hint = self.fuse([self.encode_hint(h) for h in hints], control_types, scales, rows=x.shape[0])
            if len(hints) == 1 and scales is not None:
                hint_scale = float(scales[0])  # one hint: its weight scales the residuals (as diffusers)
        else:
            self.check_types(control_types)
        device, dtype = self.device, self.dtype

        def cast(t):
            return None if t is None else t.to(device, dtype)

        outs = self.net(cast(x[:, : self.in_channels]), None, timesteps.to(device), cast(context), cast(y),
                        guided_hint=cast(guided_hint), control_types=control_types)
        if hint_scale is not None:
            outs = [o * hint_scale for o in outs]
        return [o.to(x.device, x.dtype) for o in outs]


@register("controlnet_union", unit=UnionUnit)
def build_union(det: Detection, raw: RawModel, base_unet: Mapping[str, torch.Tensor] | None) -> UnionModel:
    name = raw.path.name
    state = one_float_dtype({det.key_map[k]: raw.state_dict[k] for k in det.key_map})
    try:
        spec = UnionSpec.from_shapes({k: tuple(v.shape) for k, v in state.items()}, raw.config.get("num_trans_head"))
    except (KeyError, ValueError) as e:
        raise ModelFileError(f"{name}: incomplete ControlNet Union head ({e!r})") from e
    try:
        net = fill_network(lambda: ControlNetUnion(det.arch, spec), state, name=name, what="ControlNet Union")
    except ValueError as e:
        raise ModelFileError(f"{name}: {e}") from e
    return UnionModel(net, family=det.family, path=raw.path, format=det.format, global_average_pooling=False,
                      variant=det.variant)
