"""Units in the PNG "parameters" text (infotext), in the reference extension's format, and back.

Written: one entry per enabled unit, `ControlNet <i>: "<value>"`, the value being
`Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 1.0, Resize Mode: Crop and Resize,
Processor Res: 512, Threshold A: 100.0, Threshold B: 200.0, Guidance Start: 0.0, Guidance End: 1.0,
Pixel Perfect: False, Control Mode: Balanced` (A1111 puts the quotes around it because it holds commas).

Read: that format, and the older ones images from earlier reference versions carry (the reference itself
no longer reads them):
* v1.1.14x-v1.1.2xx: `ControlNet 0: "preprocessor: canny, model: ..., weight: 1, starting/ending: (0, 1),
  resize mode: Crop and Resize, pixel perfect: False, control mode: Balanced, preprocessor params: (512, 100, 200)"`
  (key `ControlNet` when there was one unit);
* v1.0-v1.1.1xx: one entry per field, `ControlNet-0 Module: canny, ControlNet-0 Guidance Start: 0, ...` and later
  `ControlNet 0 Preprocessor: canny, ControlNet 0 Starting Step: 0, ..., ControlNet 0 Preprocessor Parameters: (...)`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

from ..enums import HiResFixOption, PuLIDMode, UnionControlType
from ..errors import ControlNetError, InputError
from .unit import SLIDER_DEFAULT, Unit

# The reference's infotext fields, in its order.
INFOTEXT_FIELDS = (
    "module",
    "model",
    "weight",
    "resize_mode",
    "processor_res",
    "threshold_a",
    "threshold_b",
    "guidance_start",
    "guidance_end",
    "pixel_perfect",
    "control_mode",
)
UNIT_PREFIX = "ControlNet"

# Old spellings -> field names (keys already lower-cased, spaces as underscores).
_LEGACY_KEYS = {
    "preprocessor": "module",
    "starting_step": "guidance_start",
    "ending_step": "guidance_end",
}
_PAIR_KEYS = {"starting/ending": ("guidance_start", "guidance_end")}
_TRIPLE_KEYS = ("preprocessor_params", "preprocessor_parameters")
_FLAT_KEY = re.compile(
    r"^ControlNet(?:[ -](\d+))? (Enabled|Module|Preprocessor|Model|Weight|Guidance Start|Guidance End|Starting Step|"
    r"Ending Step|Resize Mode|Pixel Perfect|Control Mode|Preprocessor Parameters)$"
)
_UNIT_KEY = re.compile(r"^\s*ControlNet(?: (\d+))?$")
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')  # the grammar A1111 reads
_PYTHON_ENUM = re.compile(r"^(?:ResizeMode|ControlMode|HiResFixOption)\.(\w+)$")


def display_name(field: str) -> str:
    """`resize_mode` -> `Resize Mode`."""
    return " ".join(word.capitalize() for word in field.split("_"))


def field_name(display: str) -> str:
    """`Resize Mode` -> `resize_mode` (also for the lower-case legacy keys)."""
    return "_".join(word.lower() for word in display.strip().split(" "))


# --- writing --------------------------------------------------------------------------------------------
def serialize_unit(unit: Unit) -> str:
    """The unit's infotext value. `Hr Option` is added only when it is not "Both" (Forge writes it too, and the
    reference reads it as a plain unit field), `Union Control Type` only when a union model ran with a task
    (the reference reads it the same way), `Pulid Mode` only when it is not the default Fidelity (the reference
    writes none, and reads it as a plain field; without it a pasted Extremely style unit would come back as
    Fidelity). Values holding `,` `:` or `"` are JSON-quoted rather than the
    reference's dropping the whole entry."""
    items = [(f, getattr(unit, f)) for f in INFOTEXT_FIELDS]
    if unit.hr_option is not HiResFixOption.BOTH:
        items.append(("hr_option", unit.hr_option))
    if unit.union_control_type is not UnionControlType.UNKNOWN:
        items.append(("union_control_type", unit.union_control_type))
    if unit.pulid_mode is not PuLIDMode.FIDELITY:
        items.append(("pulid_mode", unit.pulid_mode))
    return ", ".join(f"{display_name(f)}: {_format_value(v)}" for f, v in items)


def _format_value(value) -> str:
    text = value.value if isinstance(value, Enum) else str(value)
    if any(c in text for c in ',:"\n') or text != text.strip():
        return json.dumps(text, ensure_ascii=False)
    return text


def infotext_params(units: Sequence[Unit] | Mapping[int, Unit]) -> dict[str, str]:
    """`{"ControlNet <i>": value}` for the enabled units, i being the unit's position in `units` (its key, when
    `units` maps positions to some of the units, e.g. the prepared ones), so that a pasted infotext fills the
    same unit tabs (the reference numbers enabled units 0, 1, ... instead)."""
    items = units.items() if isinstance(units, Mapping) else enumerate(units)
    return {f"{UNIT_PREFIX} {i}": serialize_unit(u) for i, u in items if u.enabled}


def parse_parameters(text: str) -> dict[str, str]:
    """The `Key: value, ...` pairs of an infotext's last line (A1111's `parse_generation_parameters`, for its
    parameters only; prompts are not needed here), JSON-quoted values unquoted."""
    lines = text.strip().split("\n")  # A1111 splits on "\n" only: a quoted value may hold \x85 or \u2028
    return {key: unquote(value) for key, value in _PARAM.findall(lines[-1] if lines else "")}


def quote(text: str) -> str:
    """A1111's quoting of one generation parameter value (`infotext_utils.quote`)."""
    text = str(text)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(text: str) -> str:
    """A1111's `infotext_utils.unquote`: a JSON-quoted value back to its text; anything else as it is."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


# --- reading --------------------------------------------------------------------------------------------
def parse_unit(text: str, *, index: int | None = None) -> Unit:
    """One unit's infotext value (current or v1.1.1xx-2xx format) -> an enabled Unit."""
    if not isinstance(text, str):
        raise InputError(f"infotext value must be text, got {type(text).__name__}", unit=index)
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):  # v1.1.14x wrote str(dict) as it was
        body = body[1:-1].replace("'", "")
    values: dict[str, Any] = {}
    for item in _split_items(body):
        key, sep, raw = item.partition(": ")
        if not sep and item.endswith(":"):  # an empty value ("Model: " loses its space to the item split)
            key, sep, raw = item[:-1], ":", ""
        if not sep:
            raise InputError(f"infotext item {item!r} is not 'Key: value'", unit=index, field="infotext")
        _put(values, field_name(key), raw.strip(), index)
    if not values:
        raise InputError("empty ControlNet infotext", unit=index, field="infotext")
    values["enabled"] = True
    return Unit.from_dict(values, index=index)


def parse_infotext(params: Mapping[str, Any], errors: dict[int, str] | None = None) -> dict[int, Unit]:
    """Every ControlNet unit in parsed generation parameters (A1111's `parse_generation_parameters` result,
    already unquoted), by unit index. With `errors` given, a broken entry is reported there by unit index and
    skipped (for pasting); without, it raises InputError naming the unit."""
    units: dict[int, Unit] = {}
    flat: dict[int, dict[str, Any]] = {}
    for key, value in params.items():
        if not isinstance(key, str):
            continue
        match = _UNIT_KEY.match(key)
        flat_match = None if match else _FLAT_KEY.match(key)
        if match is None and flat_match is None:
            continue
        index = int((match or flat_match).group(1) or 0)
        try:
            if match:
                units[index] = parse_unit(unquote(value) if isinstance(value, str) else value, index=index)
            else:
                flat.setdefault(index, {})[flat_match.group(2)] = value
        except ControlNetError as exc:
            if errors is None:
                raise
            errors[index] = f"{key}: {exc}"
    for index, fields in sorted(flat.items()):
        if index in units:
            continue  # a current-format entry for the same unit wins
        try:
            units[index] = _flat_unit(fields, index)
        except ControlNetError as exc:
            if errors is None:
                raise
            errors[index] = f"ControlNet {index}: {exc}"
    return dict(sorted(units.items()))


def _flat_unit(fields: Mapping[str, Any], index: int) -> Unit:
    values: dict[str, Any] = {}
    for display, raw in fields.items():
        _put(values, field_name(display), str(raw).strip(), index)
    values.setdefault("enabled", True)
    return Unit.from_dict(values, index=index)


def _put(values: dict, key: str, raw: str, index) -> None:
    """One `key: value` into from_dict arguments, translating the legacy keys and value spellings."""
    if key in _PAIR_KEYS or key in _TRIPLE_KEYS:
        targets = _PAIR_KEYS.get(key, ("processor_res", "threshold_a", "threshold_b"))
        parts = [p.strip() for p in raw.strip("()").split(",")]
        if len(parts) != len(targets):
            raise InputError(f"{key} must hold {len(targets)} numbers, got {raw!r}", unit=index, field="infotext")
        for target, part in zip(targets, parts):
            values[target] = _parse_value(part)
        return
    key = _LEGACY_KEYS.get(key, key)
    # Names stay text even when they look like numbers (a model file called "1234").
    value = _parse_value(raw, text_only=key in ("module", "model"))
    if key == "processor_res" and isinstance(value, float) and not value.is_integer():
        value = SLIDER_DEFAULT  # the reference's 0.5 placeholder of a module without a resolution (invert, inpaint)
    values[key] = value


def _parse_value(raw: str, text_only: bool = False):
    """The reference's value parsing (bool, int, float, else text), plus JSON-quoted text and `Enum.MEMBER`."""
    if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
        try:
            return json.loads(raw)
        except ValueError:
            pass
    if text_only:
        return raw
    if raw in ("True", "False"):
        return raw == "True"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    legacy_enum = _PYTHON_ENUM.match(raw)
    return legacy_enum.group(1) if legacy_enum else raw


def _split_items(text: str) -> list[str]:
    """Split on commas outside double quotes and parentheses."""
    items, start, depth, in_quotes, escaped = [], 0, 0, False, False
    for i, c in enumerate(text):
        if in_quotes:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_quotes = False
        elif c == '"':
            in_quotes = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth = max(depth - 1, 0)
        elif c == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item.strip() for item in items if item.strip()]
