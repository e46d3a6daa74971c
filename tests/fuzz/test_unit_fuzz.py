"""Property-based tests of unit parsing: every field, alias and shape.

- A valid unit round-trips API dict -> Unit -> infotext (A1111's quoted line) -> paste unchanged, in every field
  the infotext carries.
- A unit with one bad field always raises our InputError naming the unit and that field, never another
  exception; any JSON at all, as a unit or as infotext, raises nothing but ControlNetError.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lib_controlnet.errors import ControlNetError, InputError
from lib_controlnet.units.infotext import (
    INFOTEXT_FIELDS,
    infotext_params,
    parse_infotext,
    parse_parameters,
    parse_unit,
    quote,
    serialize_unit,
)
from lib_controlnet.units.unit import Unit
from tests.fuzz.unit_strategies import corrupt_unit, examples, json_values, valid_units

FUZZ = settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROUND_TRIP_FIELDS = (*INFOTEXT_FIELDS, "hr_option", "pulid_mode", "enabled")


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def _a1111_line(units: dict[int, Unit]) -> str:
    """The last line of an infotext as A1111 writes it (quote() around every value with , or :)."""
    params = {"Steps": "20", "Sampler": "Euler a", **infotext_params(units), "Version": "v1.10.1"}
    return "a prompt\nNegative prompt: bad\n" + ", ".join(f"{k}: {quote(v)}" for k, v in params.items())


@FUZZ
@given(payload=valid_units(), index=st.integers(0, 9))
@example(payload={"model": ""}, index=0)  # found by this test: "Model: " did not parse back
@example(payload={"module": "\x85"}, index=0)  # found by this test: a NEL inside a quoted value split the line
def test_a_valid_unit_round_trips_through_infotext(payload, index):
    unit = Unit.from_dict(payload, index=index)
    if not unit.enabled:
        unit.enabled = True  # only enabled units are written
    text = serialize_unit(unit)
    pasted = parse_unit(text, index=index)
    for field in ROUND_TRIP_FIELDS:
        assert _same(getattr(pasted, field), getattr(unit, field)), (field, text)
    # and inside a whole A1111 parameters line, beside other units and A1111's own keys
    other = Unit(enabled=True, module="canny", model="x, y: \"z\"")
    units = parse_infotext(parse_parameters(_a1111_line({index: unit, 10: other})))
    assert set(units) == {index, 10}
    for field in ROUND_TRIP_FIELDS:
        assert _same(getattr(units[index], field), getattr(unit, field)), field
        assert _same(getattr(units[10], field), getattr(other, field)), field


@FUZZ
@given(payload=valid_units())
def test_a_valid_unit_is_the_same_unit_whichever_spelling(payload):
    unit = Unit.from_dict(payload, index=0)
    assert Unit.from_dict(unit.to_dict(), index=0) == unit  # the canonical form parses to the same unit
    assert Unit.from_dict(unit) == unit


@FUZZ
@given(case=corrupt_unit(), index=st.integers(0, 9))
def test_an_invalid_field_is_our_error_naming_unit_and_field(case, index):
    payload, key, field = case
    try:
        Unit.from_dict(payload, index=index)
    except InputError as exc:
        assert exc.unit == index, str(exc)
        named = {field, "guidance_start"} if field == "guidance_end" else {field}
        assert exc.field in named, (key, str(exc))
        assert str(exc).startswith(f"ControlNet unit {index}, field '{exc.field}': ")
    else:
        pytest.fail(f"{key}={payload[key]!r} was accepted")


@FUZZ
@given(value=json_values())
def test_any_json_as_a_unit_raises_only_our_errors(value):
    for payload in (value, {"module": value}, {"image": value, "mask": value}, {"weight": value}):
        try:
            Unit.from_dict(payload, index=3)
        except ControlNetError as exc:
            assert exc.unit == 3


@FUZZ
@given(text=st.text(max_size=200) | valid_units().map(lambda u: serialize_unit(Unit.from_dict(u))).map(
    lambda t: t[: len(t) // 2]))
def test_any_infotext_raises_only_our_errors(text):
    try:
        parse_unit(text, index=2)
    except ControlNetError as exc:
        assert exc.unit == 2
    errors: dict[int, str] = {}
    parse_infotext(parse_parameters(text), errors)  # the paste path: broken entries are reported, never raised
    parse_infotext({f"ControlNet {i}": text for i in range(2)}, errors)
