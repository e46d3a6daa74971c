"""Control-mode scales against the formula and the reference's published table."""

import pytest

from lib_controlnet.enums import ControlMode
from lib_controlnet.errors import InputError
from lib_controlnet.hook.weighting import control_on_uncond, layer_scales, soft_scales

# reference-extension.md §3.3, to 6 decimals
REFERENCE_TABLE = [0.099414, 0.120502, 0.146063, 0.177046, 0.214601, 0.260122, 0.315300, 0.382182, 0.463250,
                   0.561516, 0.680625, 0.825, 1.0]


def test_soft_scales_formula_and_table():
    scales = soft_scales(13)
    assert scales == [0.825 ** (12 - i) for i in range(13)]
    assert scales == pytest.approx(REFERENCE_TABLE, abs=1e-6)
    assert scales[12] == 1.0  # the middle block


def test_sdxl_takes_the_first_ten_values():
    assert soft_scales(10) == soft_scales(13)[:10]
    assert soft_scales(10)[-1] == pytest.approx(0.561516, abs=1e-6)  # SDXL middle, as the reference and Forge


@pytest.mark.parametrize("n", [13, 10])
def test_modes(n):
    assert layer_scales(ControlMode.BALANCED, 0.6, n) == [0.6] * n
    assert layer_scales(ControlMode.PROMPT, 0.6, n) == pytest.approx([0.6 * s for s in soft_scales(n)])
    assert layer_scales(ControlMode.CONTROL, 0.6, n) == layer_scales(ControlMode.PROMPT, 0.6, n)
    assert layer_scales(ControlMode.BALANCED, 0.6, n, force_soft=True) == layer_scales(ControlMode.PROMPT, 0.6, n)
    assert [control_on_uncond(m) for m in ControlMode] == [True, True, False]


def test_advanced_weighting_replaces_and_must_match_length():
    weights = [float(i) for i in range(13)]
    assert layer_scales(ControlMode.PROMPT, 2.0, 13, weights) == weights
    for wrong in ([1.0] * 12, [1.0] * 14, [1.0] * 10):
        with pytest.raises(InputError, match="exactly 13"):
            layer_scales(ControlMode.BALANCED, 1.0, 13, wrong)


def test_modes_parse_names_values_and_legacy_ints():
    assert ControlMode.parse(2) is ControlMode.CONTROL
    assert ControlMode.parse("My prompt is more important") is ControlMode.PROMPT
    with pytest.raises(InputError) as e:
        ControlMode.parse("Guess", unit=1, field="control_mode")
    assert e.value.unit == 1 and e.value.field == "control_mode" and e.value.status_code == 422
