"""A1111's prompt emphasis syntax: `(text)` ×1.1, `[text]` ÷1.1, `(text:1.5)` ×1.5, `\\(` literal, `BREAK`.

`parse_emphasis("a (red:1.5) [cat]")` -> [("a ", 1.0), ("red", 1.5), (" ", 1.0), ("cat", 1/1.1)]. Brackets nest
and multiply; a bracket left open at the end still applies to everything after it; a closing bracket with
nothing open is plain text. `BREAK` (upper case, a word of its own) comes back as (BREAK, -1): the encoder
starts a new 75-token chunk there.
"""

from __future__ import annotations

import re

ROUND, SQUARE = 1.1, 1 / 1.1
BREAK = "BREAK"

_TOKEN = re.compile(
    r"""
      \\[()\[\]\\]             # escaped bracket or backslash: literal
    | \\                       # a lone backslash: literal
    | \(                       # open round
    | \[                       # open square
    | :\s*([+-]?[.\d]+)\s*\)   # explicit weight closing a round bracket
    | \)                       # close round
    | \]                       # close square
    | [^\\()\[\]:]+            # plain text
    | :                        # a colon that is not a weight
    """,
    re.X,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_emphasis(text: str) -> list[tuple[str, float]]:
    parts: list[list] = []  # [text, weight] pairs, weights multiplied in place as brackets close
    round_open: list[int] = []  # index into parts where each open bracket started
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for part in parts[start:]:
            part[1] *= factor

    for m in _TOKEN.finditer(text):
        token, weight = m.group(0), m.group(1)
        if token.startswith("\\"):
            parts.append([token[-1] if len(token) == 2 else token, 1.0])
        elif token == "(":
            round_open.append(len(parts))
        elif token == "[":
            square_open.append(len(parts))
        elif weight is not None and round_open:
            scale(round_open.pop(), _number(weight))
        elif token == ")" and round_open:
            scale(round_open.pop(), ROUND)
        elif token == "]" and square_open:
            scale(square_open.pop(), SQUARE)
        else:
            pieces = _BREAK.split(token)
            for i, piece in enumerate(pieces):
                if i:
                    parts.append([BREAK, -1.0])
                parts.append([piece, 1.0])
    for start in round_open:
        scale(start, ROUND)
    for start in square_open:
        scale(start, SQUARE)
    return _merge(parts)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 1.0  # "(a:.)": not a number; the bracket is then a plain 1.0 group


def _merge(parts: list[list]) -> list[tuple[str, float]]:
    merged: list[list] = []
    for text, weight in parts:
        if text == "" and weight != -1:
            continue
        if merged and merged[-1][1] == weight and weight != -1:
            merged[-1][0] += text
        else:
            merged.append([text, weight])
    return [(t, w) for t, w in merged] or [("", 1.0)]
