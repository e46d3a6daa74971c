"""Hypothesis strategies for ControlNet units in every shape a client sends them, and for junk.

`valid_units()` draws API dicts the reference accepts: every field, in each of its accepted spellings (bools as
true/1/"yes", enums by value, member name, index and alias, numbers as text), the legacy aliases, unknown keys.
`corrupt_unit()` replaces one field (or alias) of a valid unit with a value of the wrong type or out of range.
`json_values()` is any JSON document, for payloads nobody would write on purpose.

The fuzz tests (tests/fuzz, tests/standalone_server/test_server_fuzz.py) and the long run
(tools/fuzz_api.py) share these.
"""

from __future__ import annotations

import os

from hypothesis import strategies as st

from lib_controlnet.enums import ControlMode, HiResFixOption, InputMode, PuLIDMode, ResizeMode, UnionControlType

# CN_FUZZ_SCALE multiplies every example count (tools/fuzz_api.py and a long local run set it).
SCALE = float(os.environ.get("CN_FUZZ_SCALE", "1"))


def examples(count: int) -> int:
    return max(1, int(count * SCALE))


# --- pieces ------------------------------------------------------------------------------------------------
def json_values(max_leaves: int = 12):
    scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | st.text(
        max_size=20)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=8), inner, max_size=4), max_leaves=max_leaves)


def bools():
    return st.booleans() | st.sampled_from([0, 1, "true", "false", "True", "yes", "no", "on", "off", " 1 "])


def _choice(enum_cls, aliases=()):
    members = list(enum_cls)
    return (st.sampled_from([m.value for m in members]) | st.sampled_from([m.name for m in members])
            | st.sampled_from([m.value.upper() for m in members]) | st.sampled_from(members)
            | st.integers(0, len(members) - 1) | (st.sampled_from(list(aliases)) if aliases else st.nothing()))


RESIZE_ALIASES = ("Inner Fit (Scale to Fit)", "Scale to Fit (Inner Fit)", "Outer Fit (Shrink to Fit)",
                  "Envelope (Outer Fit)")


def numbers(low: float, high: float):
    """A number in [low, high] as an int, a float or numeric text."""
    value = st.floats(low, high, allow_nan=False) | st.integers(int(low), int(high)).filter(lambda v: low <= v <= high)
    return value | value.map(repr) | value.map(lambda v: f" {v} ")


def texts():
    """Names as clients write them, and names that stress the infotext's quoting."""
    return (st.sampled_from(["none", "canny", "invert (from white bg & black line)", "depth", "lineart_standard",
                             "control_v11p_sd15_canny [d14c016b]", "None", "demo-random-weights-controlnet-sd15"])
            | st.text(st.characters(blacklist_categories=("Cs",)), max_size=24))


def _guidance():
    return st.tuples(st.floats(0, 1), st.floats(0, 1)).map(sorted)


# --- valid units -----------------------------------------------------------------------------------------------
FIELD_VALUES = {
    "enabled": bools(),
    "module": texts(),
    "model": texts(),
    "weight": numbers(0, 2),
    "resize_mode": _choice(ResizeMode, RESIZE_ALIASES) | st.just(3),
    "low_vram": bools(),
    "processor_res": st.integers(-(2**31), 2**31) | st.integers(-5, 4096).map(str) | st.none(),
    "threshold_a": numbers(-1e6, 1e6) | st.none(),
    "threshold_b": numbers(-1e6, 1e6) | st.none(),
    "pixel_perfect": bools(),
    "control_mode": _choice(ControlMode),
    "inpaint_crop_input_image": bools(),
    "hr_option": _choice(HiResFixOption),
    "save_detected_map": bools(),
    "advanced_weighting": st.none() | st.lists(numbers(-10, 10), min_size=1, max_size=13),
    "pulid_mode": _choice(PuLIDMode),
    "union_control_type": _choice(UnionControlType),
    "input_mode": _choice(InputMode),
    "is_ui": bools(),
    "loopback": bools(),
    "output_dir": st.text(max_size=8) | st.none(),
    "batch_mask_dir": st.text(max_size=8) | st.none(),
    "animatediff_batch": bools(),
    "batch_modifiers": st.lists(st.integers(), max_size=2) | st.none(),
    "batch_image_files": st.lists(st.text(max_size=4), max_size=2) | st.none(),
    "batch_keyframe_idx": st.none() | st.text(max_size=4) | st.lists(st.integers(0, 9), max_size=3),
}
ALIASES = {"guidance": "guidance_end", "lowvram": "low_vram"}  # input_image / mask_image: image fields


@st.composite
def valid_units(draw, *, image=None, known_modules=None, models=None):
    """An API unit dict; `image` (a strategy) adds an image, `known_modules`/`models` restrict the names."""
    unit = {}
    for name, values in FIELD_VALUES.items():
        if draw(st.booleans()):
            unit[name] = draw(values)
    if known_modules is not None:
        unit["module"] = draw(st.sampled_from(known_modules))
    if models is not None:
        unit["model"] = draw(st.sampled_from(models))
    start, end = draw(_guidance())
    if draw(st.booleans()):
        unit["guidance_start"] = start
    if draw(st.booleans()):
        unit["guidance_end" if draw(st.booleans()) else "guidance"] = end
    for alias, target in ALIASES.items():
        if target in unit and draw(st.booleans()):
            unit[alias] = unit.pop(target)
    if draw(st.booleans()):
        unit[draw(st.sampled_from(["guessmode", "guess_mode"]))] = draw(st.booleans())
    if draw(st.booleans()):
        unit[draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in _ALL_KEYS))] = draw(json_values(4))
    if image is not None:
        unit[draw(st.sampled_from(["image", "input_image"]))] = draw(image)
    return unit


_ALL_KEYS = {*FIELD_VALUES, *ALIASES, "guidance_start", "guidance_end", "guessmode", "guess_mode", "image",
             "input_image", "mask", "mask_image", "effective_region_mask", "ipadapter_input", "batch_images"}

# --- invalid units ---------------------------------------------------------------------------------------------
JUNK = {
    "bool": st.sampled_from(["maybe", 2, -1, 0.5, [], {}, "", "truthy"]),
    "number": st.sampled_from(["x", "", [], {}, True, float("inf"), float("-inf"), "nan", [1.0]]),
    "range": st.sampled_from([-0.01, 2.5, 1e300, -1e300, 3]),
    "unit_range": st.sampled_from([-0.5, 1.5, 1e9, -1e-9]),
    "choice": st.sampled_from(["Sometimes", 17, -1, True, 2.5, [], {}, "", None]),
    "text": st.sampled_from([5, 2.5, [], {"a": 1}, True]),
    "whole": st.sampled_from([0.5, -2.25, "1.5", "abc", [], True]),
    "weights": st.sampled_from([[], "1,2", 5, [1, "x"], [None], {"a": 1}, [float("nan")]]),
    "image": st.sampled_from([5, 2.5, True, object]),
    "list": st.sampled_from([5, "abc", {"a": 1}, True]),
}
JUNK_FOR = {
    "enabled": "bool", "low_vram": "bool", "lowvram": "bool", "pixel_perfect": "bool", "is_ui": "bool",
    "inpaint_crop_input_image": "bool", "save_detected_map": "bool", "loopback": "bool", "animatediff_batch": "bool",
    "weight": "range", "guidance_start": "unit_range", "guidance_end": "unit_range", "guidance": "unit_range",
    "threshold_a": "number", "threshold_b": "number", "processor_res": "whole",
    "resize_mode": "choice", "control_mode": "choice", "hr_option": "choice", "pulid_mode": "choice",
    "union_control_type": "choice", "input_mode": "choice",
    "module": "text", "model": "text", "output_dir": "text",
    "advanced_weighting": "weights", "image": "image", "mask": "image", "input_image": "image",
    "effective_region_mask": "image", "batch_modifiers": "list", "batch_image_files": "list",
}
TARGET = {"lowvram": "low_vram", "guidance": "guidance_end", "input_image": "image", "mask_image": "mask"}


@st.composite
def corrupt_unit(draw):
    """(unit dict with one bad field, the key that was spoiled, the field an error must name)."""
    unit = draw(valid_units())
    key = draw(st.sampled_from(sorted(JUNK_FOR)))
    for alias, target in TARGET.items():  # never send an alias beside its target
        if key in (alias, target):
            unit.pop(alias, None)
            unit.pop(target, None)
    unit[key] = draw(JUNK[JUNK_FOR[key]])
    return unit, key, TARGET.get(key, key)
