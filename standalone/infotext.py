"""The generation-parameters text A1111 writes into PNGs and returns in `info` ("infotext").

    a photo of a cat
    Negative prompt: blurry
    Steps: 20, Sampler: Euler a, CFG scale: 7.0, Seed: 1, Size: 512x512, Model hash: 0123456789, Model: name

Values holding a comma, colon or newline are JSON-quoted (A1111's rule), so the line stays parseable.
"""

from __future__ import annotations

from collections.abc import Mapping

from lib_controlnet.units.infotext import quote


def infotext(prompt: str, negative_prompt: str, params: Mapping[str, object]) -> str:
    """`params` in display order; None values are left out."""
    line = ", ".join(f"{k}: {quote(v)}" for k, v in params.items() if v is not None)
    negative = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{line}"
