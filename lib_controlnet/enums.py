"""User-facing choices, with the exact strings the reference extension uses in payloads and infotexts."""

from __future__ import annotations

from enum import Enum

from .errors import InputError


class _Choice(str, Enum):
    """A string enum that parses its value, its int index (legacy payloads) and a few aliases."""

    @classmethod
    def _aliases(cls) -> dict[str, str]:
        return {}

    @classmethod
    def parse(cls, value, *, unit: int | None = None, field: str | None = None):
        if isinstance(value, cls):
            return value
        members = list(cls)
        if isinstance(value, bool):
            pass  # bool is an int subclass; never a valid choice
        elif isinstance(value, int) and 0 <= value < len(members):
            return members[value]
        elif isinstance(value, str):
            text = cls._aliases().get(value, value)
            for member in members:
                if text == member.value or text.lower() == member.value.lower() or text == member.name:
                    return member
        allowed = ", ".join(repr(m.value) for m in members)
        raise InputError(f"{value!r} is not one of {allowed}", unit=unit, field=field or cls.__name__)


class ControlMode(_Choice):
    BALANCED = "Balanced"
    PROMPT = "My prompt is more important"
    CONTROL = "ControlNet is more important"


class HiResFixOption(_Choice):
    BOTH = "Both"
    LOW_RES_ONLY = "Low res only"
    HIGH_RES_ONLY = "High res only"


class ResizeMode(_Choice):
    RESIZE = "Just Resize"
    INNER_FIT = "Crop and Resize"
    OUTER_FIT = "Resize and Fill"

    @classmethod
    def _aliases(cls) -> dict[str, str]:
        # Names older clients (Deforum, the reference before 1.1) still send.
        return {
            "Inner Fit (Scale to Fit)": "Crop and Resize",
            "Scale to Fit (Inner Fit)": "Crop and Resize",
            "Outer Fit (Shrink to Fit)": "Resize and Fill",
            "Envelope (Outer Fit)": "Resize and Fill",
        }

    @classmethod
    def from_img2img(cls, value) -> ResizeMode:
        """A1111's img2img resize mode (`p.resize_mode`: 0 Just resize, 1 Crop and resize, 2 Resize and fill,
        3 Just resize (latent upscale)) as the mode a unit reading the init image fits it by: the reference's
        mapping, where 3 and anything unknown are Just Resize."""
        try:
            return cls.parse(value)
        except InputError:
            return cls.RESIZE


# Unit fields the reference declares that the control math does not use; parsed here so a payload naming
# them is validated like every other field.
class InputMode(_Choice):
    SIMPLE = "simple"
    BATCH = "batch"
    MERGE = "merge"


class PuLIDMode(_Choice):
    FIDELITY = "Fidelity"
    STYLE = "Extremely style"


class UnionControlType(_Choice):
    """ControlNet Union/ProMax task; the int index (0..7) is the task id, Unknown sends none."""

    OPENPOSE = "OpenPose"
    DEPTH = "Depth"
    SOFT_EDGE = "Soft Edge"
    HARD_EDGE = "Hard Edge"
    NORMAL_MAP = "Normal Map"
    SEGMENTATION = "Segmentation"
    TILE = "Tile"
    INPAINT = "Inpaint"
    UNKNOWN = "Unknown"

    @classmethod
    def from_tag(cls, tag: str) -> UnionControlType:
        """The task slot for a control type tag (the reference's `from_str`, which its panel applies to the
        Control Type radio); Unknown for tags no slot serves ("All", "Shuffle", "IP-Adapter"...)."""
        return _UNION_TAGS.get(str(tag).lower(), cls.UNKNOWN)

    @property
    def slot(self) -> int | None:
        """The task index the model's one-hot and task embedding use; None for Unknown."""
        return None if self is UnionControlType.UNKNOWN else list(UnionControlType).index(self)


_UNION_TAGS = {
    "openpose": UnionControlType.OPENPOSE,
    "depth": UnionControlType.DEPTH,
    "scribble": UnionControlType.SOFT_EDGE,
    "softedge": UnionControlType.SOFT_EDGE,
    "canny": UnionControlType.HARD_EDGE,
    "lineart": UnionControlType.HARD_EDGE,
    "mlsd": UnionControlType.HARD_EDGE,
    "normalmap": UnionControlType.NORMAL_MAP,
    "segmentation": UnionControlType.SEGMENTATION,
    "tile": UnionControlType.TILE,
    "blur": UnionControlType.TILE,
    "inpaint": UnionControlType.INPAINT,
}
