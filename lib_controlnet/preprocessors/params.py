"""Turning request values (processor_res, threshold_a, threshold_b) into the numbers a preprocessor runs with."""

from __future__ import annotations

import math

from lib_controlnet.errors import InputError

from .declaration import Params, Preprocessor, Slider

# The value API clients and the UI send for "use the slider's default". Any other negative number means the
# same (the reference resets every out-of-range value, and its own tests send -100); only -1 goes unremarked.
DEFAULT_SENTINEL = -1


def _resolve(slider: Slider, value, field: str, module: str, notes: list[str] | None) -> float:
    if not slider.visible or not slider.affects_output:
        return slider.value  # a parameter this module does not have: whatever was sent is irrelevant
    if value is None or value == DEFAULT_SENTINEL:
        return slider.value
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{slider.label} must be a number, got {value!r}", field=field) from None
    if math.isfinite(number) and number < 0:
        if notes is not None:
            notes.append(f"{field} {number:g} is negative, so {module} used the default {slider.label} "
                         f"{slider.value:g}")
        return slider.value
    if not slider.contains(number):
        # The reference silently swaps an out-of-range value for the default; we say so instead.
        shown = "nan" if math.isnan(number) else number
        raise InputError(
            f"{slider.label} for {module} must be between {slider.minimum:g} and {slider.maximum:g} "
            f"(or negative for the default {slider.value:g}), got {shown}",
            field=field,
        )
    return number


def resolve_params(preprocessor: Preprocessor, processor_res=DEFAULT_SENTINEL, threshold_a=DEFAULT_SENTINEL,
                   threshold_b=DEFAULT_SENTINEL, seed: int | None = None,
                   fields: tuple[str, str, str] = ("processor_res", "threshold_a", "threshold_b"),
                   notes: list[str] | None = None) -> Params:
    """Params for one call: a negative value (or None) means the slider's default; a parameter the module does
    not have is ignored whatever its value; any other value must lie in the slider's range (InputError naming
    `fields`). `notes`, when given, gets a sentence for every negative value other than -1 (for the response's
    warnings and the log)."""
    name = preprocessor.name
    resolution = _resolve(preprocessor.resolution, processor_res, fields[0], name, notes)
    return Params(
        resolution=int(round(resolution)),
        slider_1=_resolve(preprocessor.slider_1, threshold_a, fields[1], name, notes),
        slider_2=_resolve(preprocessor.slider_2, threshold_b, fields[2], name, notes),
        seed=None if seed is None else int(seed) & 0xFFFFFFFF,
    )


def unused_resolution_note(preprocessor: Preprocessor, processor_res, used: int,
                           field: str = "processor_res") -> str | None:
    """Pixel perfect replaces processor_res: a value the slider would refuse is worth a word, not an error."""
    slider = preprocessor.resolution
    if processor_res is None or processor_res == DEFAULT_SENTINEL or not slider.visible or not slider.affects_output:
        return None
    try:
        number = float(processor_res)
    except (TypeError, ValueError):
        return None
    if slider.contains(number):
        return None
    return (f"{field} {number:g} is not used: pixel perfect computed the {slider.label} ({used}) from the image "
            f"and the generation size")
