"""The one user-level unit type: what the UI, the HTTP API, infotext and other extensions hand us.

A plain dataclass (no pydantic: A1111 ships pydantic 1, Forge pydantic 2). Its fields, their order and
defaults are the reference extension's `ControlNetUnit`, so `vars(unit)` code and payloads written for the
reference keep working. Construction validates and normalises every field and raises `InputError` naming
the field; `Unit.from_dict` adds the unit index and applies the legacy aliases.

Images (`image`, `mask`, `effective_region_mask`) are kept as given; `image_input` decodes them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from typing import Any

import numpy as np

from ..enums import ControlMode, HiResFixOption, InputMode, PuLIDMode, ResizeMode, UnionControlType
from ..errors import ControlNetError, InputError

# -1 in processor_res / threshold_a / threshold_b means "the preprocessor's slider default".
SLIDER_DEFAULT = -1

# Renamed keys older clients still send: alias -> field. Sending both is an error (the reference asserts).
FIELD_ALIASES = {
    "guidance": "guidance_end",
    "lowvram": "low_vram",
    "input_image": "image",
}
# Guess Mode was removed in the reference's 1.1.136 (now control_mode "ControlNet is more important").
IGNORED_LEGACY_KEYS = ("guessmode", "guess_mode")

# Legacy resize_mode ints (A1111's img2img numbering): 3 is "Just resize (latent upscale)".
_RESIZE_MODE_INTS = {0: ResizeMode.RESIZE, 1: ResizeMode.INNER_FIT, 2: ResizeMode.OUTER_FIT, 3: ResizeMode.RESIZE}
# pydantic 1 accepted these spellings for booleans; payloads written for the reference may use them.
_TRUE = {"true", "1", "yes", "on", "y", "t"}
_FALSE = {"false", "0", "no", "off", "n", "f"}


@dataclass(eq=False, repr=False)
class Unit:
    # UI-only fields.
    is_ui: bool = False
    input_mode: InputMode = InputMode.SIMPLE
    batch_images: Any = None
    output_dir: str = ""
    loopback: bool = False
    # General fields.
    enabled: bool = False
    module: str = "none"
    model: str = "None"
    weight: float = 1.0
    image: Any = None
    resize_mode: ResizeMode = ResizeMode.INNER_FIT
    low_vram: bool = False
    processor_res: int = SLIDER_DEFAULT
    threshold_a: float = SLIDER_DEFAULT
    threshold_b: float = SLIDER_DEFAULT
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    pixel_perfect: bool = False
    control_mode: ControlMode = ControlMode.BALANCED
    inpaint_crop_input_image: bool = True
    hr_option: HiResFixOption = HiResFixOption.BOTH
    save_detected_map: bool = True
    advanced_weighting: list[float] | None = None
    effective_region_mask: Any = None
    pulid_mode: PuLIDMode = PuLIDMode.FIDELITY
    union_control_type: UnionControlType = UnionControlType.UNKNOWN
    ipadapter_input: Any = None
    mask: Any = None
    # AnimateDiff compatibility fields.
    batch_mask_dir: str | None = None
    animatediff_batch: bool = False
    batch_modifiers: list = field(default_factory=list)
    batch_image_files: list = field(default_factory=list)
    batch_keyframe_idx: str | list | None = None
    # Not reference fields: what from_dict saw, so that the caller can warn. Never compared or serialised.
    ignored_keys: tuple[str, ...] = field(default=(), repr=False)
    aliases_used: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self):
        for name, check in _CHECKS.items():
            try:
                setattr(self, name, check(getattr(self, name)))
            except ControlNetError as exc:
                exc.field = name  # the check may have named its enum class; the payload knows the field
                raise exc.at(field=name) from None
            except (TypeError, ValueError) as exc:
                raise InputError(str(exc), field=name) from None
        if self.guidance_start > self.guidance_end:
            raise InputError(
                f"guidance_start ({self.guidance_start}) must not be greater than guidance_end ({self.guidance_end})",
                field="guidance_start",
            )

    # --- construction ---------------------------------------------------------------------------------
    @classmethod
    def from_dict(
        cls,
        values: Mapping | Any,
        *,
        index: int | None = None,
        is_known_module: Callable[[str], bool] | None = None,
    ) -> Unit:
        """A unit from an API dict, a UI dict, another extension's unit object, or a Unit (copied).

        `index` is put into every error; `is_known_module`, when given, rejects unknown preprocessors
        (the reference checks this for disabled units too).
        """
        try:
            if isinstance(values, Unit):
                unit = replace(values)
            elif isinstance(values, Mapping):
                unit = cls(**_dict_arguments(values))
            else:
                unit = cls(**_object_arguments(values))
            if is_known_module is not None and not is_known_module(unit.module):
                raise InputError(f"module {unit.module!r} is not a known preprocessor", field="module")
        except ControlNetError as exc:
            raise exc.at(unit=index) from None
        except TypeError as exc:  # a value no check anticipated; still the caller's input
            raise InputError(str(exc), unit=index) from None
        return unit

    def to_dict(self) -> dict[str, Any]:
        """Every reference field in declaration order; enums as their strings, images as given."""
        out = {}
        for name in FIELD_NAMES:
            value = getattr(self, name)
            if isinstance(value, Enum):
                value = value.value
            elif isinstance(value, list):
                value = list(value)
            out[name] = value
        return out

    # --- what other code asks about a unit ----------------------------------------------------------------
    @property
    def has_model(self) -> bool:
        return self.model.lower() not in ("", "none")

    @property
    def has_module(self) -> bool:
        return self.module.lower() not in ("", "none")

    @property
    def is_inpaint(self) -> bool:
        """The reference's test: the preprocessor keeps the mask as alpha (inpaint hint protocol)."""
        return "inpaint" in self.module

    @property
    def uses_clip(self) -> bool:
        """CLIP-based preprocessors keep the RGBA input too (the mask weights the image embedding)."""
        return uses_clip(self.module)

    def warnings(self) -> list[str]:
        """What the caller should log about this unit's payload (accepted, but worth a word)."""
        notes = []
        for key in self.aliases_used:
            if key in FIELD_ALIASES or key == "mask_image":
                target = FIELD_ALIASES.get(key, "mask")
                notes.append(f"'{key}' is a deprecated alias of '{target}'")
            else:
                notes.append(f"'{key}' is no longer used (Guess Mode is control_mode 'ControlNet is more important')")
        notes.extend(f"unknown field '{key}' ignored" for key in self.ignored_keys)
        return notes

    def __eq__(self, other) -> bool:
        if not isinstance(other, Unit):
            return NotImplemented
        return all(_same(getattr(self, n), getattr(other, n)) for n in FIELD_NAMES)

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        # Images can be megabytes of base64: show their kind and size, not their bytes.
        shown = ", ".join(f"{n}={_short(getattr(self, n))}" for n in FIELD_NAMES)
        return f"Unit({shown})"


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Unit) if f.name not in ("ignored_keys", "aliases_used"))


def _dict_arguments(values: Mapping) -> dict[str, Any]:
    values = dict(values)
    aliases_used = []
    for alias, target in FIELD_ALIASES.items():
        if alias in values:
            if target in values:
                raise InputError(f"both '{alias}' (a deprecated alias) and '{target}' are given", field=target)
            values[target] = values.pop(alias)
            aliases_used.append(alias)
    if "mask_image" in values:  # Forge's name for mask; None counts as absent, as in the reference
        mask_image = values.pop("mask_image")
        if mask_image is not None:
            if values.get("mask") is not None:
                raise InputError("cannot specify both 'mask' and 'mask_image'", field="mask")
            values["mask"] = mask_image
        aliases_used.append("mask_image")
    for key in IGNORED_LEGACY_KEYS:
        if key in values:
            values.pop(key)
            aliases_used.append(key)
    if "enabled" not in values:
        # A payload that names a preprocessor or a model means to use it (Forge, and the reference
        # before v1.1.447); one that names neither is an empty slot.
        module, model = values.get("module"), values.get("model")
        values["enabled"] = (isinstance(module, str) and module.lower() not in ("", "none")) or (
            isinstance(model, str) and model.lower() not in ("", "none")
        )
    known = set(FIELD_NAMES)
    ignored = tuple(sorted(str(k) for k in values if k not in known))
    arguments = {k: v for k, v in values.items() if k in known}
    arguments["ignored_keys"] = ignored
    arguments["aliases_used"] = tuple(aliases_used)
    return arguments


def _object_arguments(obj: Any) -> dict[str, Any]:
    """Another extension's unit object (the reference's ControlNetUnit, Forge's, a SimpleNamespace)."""
    if not hasattr(obj, "__dict__") and not hasattr(type(obj), "__slots__"):
        raise InputError(f"a unit must be a dict or a unit object, got {type(obj).__name__}")
    arguments = {name: getattr(obj, name) for name in FIELD_NAMES if hasattr(obj, name)}
    for alias, target in (*FIELD_ALIASES.items(), ("mask_image", "mask")):
        if target not in arguments and getattr(obj, alias, None) is not None:
            arguments[target] = getattr(obj, alias)
    return arguments


# --- per-field checks: each returns the normalised value or raises -----------------------------------------
def _bool(value) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise InputError(f"must be true or false, got {value!r}")


def _number(value) -> float:
    if isinstance(value, (bool, np.bool_)) or value is None:
        raise InputError(f"must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise InputError(f"must be a number, got {value!r}") from None
    if not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"must be a finite number, got {value}")
    return value


def _between(low: float, high: float):
    def check(value) -> float:
        number = _number(value)
        if not low <= number <= high:
            raise InputError(f"must be between {low:g} and {high:g}, got {number:g}")
        return number

    return check


def _slider_number(value) -> float:
    return float(SLIDER_DEFAULT) if value is None else _number(value)


def _slider_int(value) -> int:
    if value is None:
        return SLIDER_DEFAULT
    number = _number(value)
    if number != int(number):
        raise InputError(f"must be a whole number, got {number:g}")
    return int(number)


def _text(default: str):
    def check(value) -> str:
        if value is None:
            return default
        if not isinstance(value, str):
            raise InputError(f"must be a string, got {type(value).__name__}")
        return value

    return check


def _optional_text(value):
    if value is not None and not isinstance(value, str):
        raise InputError(f"must be a string or null, got {type(value).__name__}")
    return value


def _choice(enum_cls):
    def check(value):
        if isinstance(value, Enum) and not isinstance(value, enum_cls):
            value = value.value  # another extension's enum with the same strings
        return enum_cls.parse(value)

    return check


def _resize_mode(value) -> ResizeMode:
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        if int(value) in _RESIZE_MODE_INTS:
            return _RESIZE_MODE_INTS[int(value)]
        raise InputError(f"{value!r} is not a resize mode index (0 to 3)")
    return _choice(ResizeMode)(value)


def _weights(value):
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not value:
        raise InputError(f"must be a non-empty list of numbers or null, got {value!r}")
    out = []
    for i, item in enumerate(value):
        try:
            out.append(_number(item))
        except InputError as exc:
            raise InputError(f"item {i} {exc.message}") from None
    return out


def _image_like(value):
    # Decoded later (image_input); only the container type is checked here, so that `image: 5` fails early.
    if value is None or isinstance(value, (str, np.ndarray, dict, list, tuple)) or hasattr(value, "getbands"):
        return value
    raise InputError(f"must be base64 text, an image array, a dict or a list, got {type(value).__name__}")


def _region_mask(value):
    if value is None or isinstance(value, (str, np.ndarray)) or hasattr(value, "getbands"):
        return value
    raise InputError(f"must be base64 text or an image array, got {type(value).__name__}")


def _ipadapter_input(value):
    # Kept as text: it is never unpickled here (the reference torch.loads it unsafely).
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items or not all(isinstance(v, str) for v in items):
        raise InputError("must be base64 text or a non-empty list of base64 texts")
    return value


def _list(value):
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise InputError(f"must be a list, got {type(value).__name__}")
    return list(value)


def _keyframes(value):
    if value is None or isinstance(value, (str, list)):
        return value
    if isinstance(value, tuple):
        return list(value)
    raise InputError(f"must be a string, a list or null, got {type(value).__name__}")


def _any(value):
    return value


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "is_ui": _bool,
    "input_mode": _choice(InputMode),
    "batch_images": _any,
    "output_dir": _text(""),
    "loopback": _bool,
    "enabled": _bool,
    "module": _text("none"),
    "model": _text("None"),
    "weight": _between(0.0, 2.0),
    "image": _image_like,
    "resize_mode": _resize_mode,
    "low_vram": _bool,
    "processor_res": _slider_int,
    "threshold_a": _slider_number,
    "threshold_b": _slider_number,
    "guidance_start": _between(0.0, 1.0),
    "guidance_end": _between(0.0, 1.0),
    "pixel_perfect": _bool,
    "control_mode": _choice(ControlMode),
    "inpaint_crop_input_image": _bool,
    "hr_option": _choice(HiResFixOption),
    "save_detected_map": _bool,
    "advanced_weighting": _weights,
    "effective_region_mask": _region_mask,
    "pulid_mode": _choice(PuLIDMode),
    "union_control_type": _choice(UnionControlType),
    "ipadapter_input": _ipadapter_input,
    "mask": _image_like,
    "batch_mask_dir": _optional_text,
    "animatediff_batch": _bool,
    "batch_modifiers": _list,
    "batch_image_files": _list,
    "batch_keyframe_idx": _keyframes,
}


def _short(value) -> str:
    if isinstance(value, np.ndarray):
        return f"<array {'x'.join(map(str, value.shape))} {value.dtype}>"
    if isinstance(value, str) and len(value) > 80:
        return f"<text of {len(value)} characters>"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)) and len(value) <= 64:
        inner = ", ".join(_short(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    if isinstance(value, Enum):
        return repr(value.value)
    if hasattr(value, "getbands"):
        return f"<PIL image {value.size[0]}x{value.size[1]} {value.mode}>"
    return repr(value)


def _same(a, b) -> bool:
    """Equality that also works for image arrays nested in dicts and lists."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and np.array_equal(a, b)
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a is b or a == b


def uses_clip(module: str) -> bool:
    """The reference's rule: CLIP-based preprocessors get the RGBA input (the mask as alpha weights the image
    embedding). `module` is the preprocessor's name (ip-adapter-auto counts, as in the reference, until the
    model resolves it). ip-adapter_pulid reads faces, as face_id does, and takes no CLIP mask: it gets RGB."""
    return ("ip-adapter" in module and "face_id" not in module and "pulid" not in module) or module in (
        "clip_vision", "revision_clipvision", "revision_ignore_prompt")
