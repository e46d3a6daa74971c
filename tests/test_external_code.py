"""scripts/external_code.py: the reference's helper API on a script runner shaped like A1111's."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SOURCE = Path(__file__).parent.parent / "scripts" / "external_code.py"
spec = importlib.util.spec_from_file_location("external_code", SOURCE)
external_code = importlib.util.module_from_spec(spec)
spec.loader.exec_module(external_code)


class FakeScript:
    def __init__(self, title, args_from, args_to):
        self._title, self.args_from, self.args_to = title, args_from, args_to

    def title(self):
        return self._title


class Runner:
    alwayson_scripts = [FakeScript("Other", 0, 2), FakeScript("ControlNet", 2, 5)]


class P:
    scripts = Runner()
    script_args = ("a", "b", {"module": "canny", "model": "m", "weight": 0.5}, None, {"enabled": False})


def test_units_are_read_from_our_slots_only():
    units = external_code.get_all_units_in_processing(P())
    assert [u.module for u in units] == ["canny", "none"]
    assert units[0].enabled and units[0].weight == 0.5  # names a module: enabled (pre-1.1.447 behaviour)


def test_update_keeps_other_scripts_args_and_fills_our_slots():
    p = P()
    external_code.update_cn_script_in_processing(p, [external_code.ControlNetUnit(enabled=True, module="invert")])
    assert p.script_args[:2] == ("a", "b") and len(p.script_args) == 5 and isinstance(p.script_args, tuple)
    assert p.script_args[2].module == "invert" and not p.script_args[3].enabled and not p.script_args[4].enabled


def test_helpers():
    assert external_code.get_api_version() == 3
    assert external_code.is_cn_script(FakeScript("controlnet", 0, 0))
    assert external_code.resize_mode_from_value(2) is external_code.ResizeMode.OUTER_FIT
    assert external_code.resize_mode_from_value("Inner Fit (Scale to Fit)") is external_code.ResizeMode.INNER_FIT
    assert external_code.pixel_perfect_resolution(np.zeros((512, 768, 3)), 1024, 1024, 1) == 1024
    assert external_code.get_modules()[0] == "none" and "canny" in external_code.get_modules_detail()
    with pytest.raises(Exception, match="weight"):
        external_code.to_processing_unit({"weight": 5})
