"""Slider updates follow the preprocessor declarations; the control-type filter's lists; model families."""

from __future__ import annotations

import json
import os

import pytest
from safetensors import safe_open
from ui_model_files import write_controlnet

from lib_controlnet.api.info import control_types
from lib_controlnet.ui import model_family as families
from lib_controlnet.ui.control_type_filter import models_for_family, type_choices, type_names
from lib_controlnet.ui.sliders import slider_states, slider_updates


@pytest.mark.parametrize("name", ["canny", "scribble_xdog", "tile_colorfix+sharp", "invert", "inpaint_only",
                                  "mediapipe_face", "none", "recolor_luminance", "blur_gaussian"])
def test_slider_states_match_the_declaration(registry, name):
    p = registry.get(name)
    states = slider_states(p)
    for state, declared, fallback in zip(states, (p.resolution, p.slider_1, p.slider_2),
                                         ("Preprocessor resolution", "Threshold A", "Threshold B")):
        assert state.visible == declared.visible
        assert (state.minimum, state.maximum, state.step, state.value) == (
            declared.minimum, declared.maximum, declared.step, declared.value)
        assert state.label == (declared.label if declared.visible else fallback)
    update = slider_updates(p)[1]
    assert update["__type__"] == "generic_update"
    assert update["label"] == states[1].label and update["visible"] == states[1].visible


def test_sliders_differ_between_preprocessors(registry):
    canny = slider_states(registry.get("canny"))
    xdog = slider_states(registry.get("scribble_xdog"))
    sharp = slider_states(registry.get("tile_colorfix+sharp"))
    assert (canny[1].label, canny[1].maximum, canny[2].visible) == ("Low Threshold", 255, True)
    assert (xdog[1].label, xdog[1].maximum, xdog[2].visible) == ("XDoG Threshold", 64, False)
    assert (sharp[1].label, sharp[2].label, sharp[1].step) == ("Variation", "Sharpness", 1.0)
    assert not slider_states(registry.get("inpaint_only"))[0].visible  # no resolution to set
    assert not slider_states(registry.get("canny"), pixel_perfect=True)[0].visible
    assert all(set(u) == {"__type__"} for u in slider_updates(None))  # no change at all


def _names(models) -> dict[str, str]:
    return {e.stem: e.name for e in models.entries()}


def test_models_filtered_by_checkpoint_family(models):
    n = _names(models)
    assert models_for_family(models, "sd1") == [n["canny_a"], n["control_v11p_lineart"]]
    assert models_for_family(models, "sdxl") == [n["canny_b"], n["t2i_xl_openpose"]]
    assert models_for_family(models, None) == list(n.values())


def test_type_lists_by_type_and_family(registry, models):
    n = _names(models)
    canny = type_choices("Canny", registry, models_for_family(models, "sd1"))
    assert canny.modules[0] == "none" and set(canny.modules[1:]) == {"canny", "invert (from white bg & black line)"}
    assert canny.models == ["None", n["canny_a"]]
    assert (canny.default_module, canny.default_model) == ("canny", n["canny_a"])
    assert type_choices("Canny", registry, models_for_family(models, "sdxl")).default_model == n["canny_b"]
    lineart = type_choices("Lineart", registry, models_for_family(models, None))
    assert lineart.models == ["None", n["control_v11p_lineart"]]
    pose = type_choices("OpenPose", registry, models_for_family(models, "sdxl"))
    assert pose.models == ["None", n["t2i_xl_openpose"]]
    assert pose.default_module == next(p.label for p in registry.sorted() if "OpenPose" in p.tags)
    everything = type_choices("All", registry, list(n.values()))
    assert everything.modules == [p.label for p in registry.sorted()] and everything.default_module == "none"
    assert type_choices("no such type", registry, []).modules == everything.modules


def test_type_lists_are_the_api_control_types(registry, models):
    names = models.list_names()
    api = control_types(registry, names)
    for tag in type_names(registry):
        ui = type_choices(tag, registry, names)
        assert [m for m in ui.modules if m != "none"] == [m for m in api[tag]["module_list"] if m != "none"]
        # where no model name mentions the type, the panel lists every model rather than none
        assert ui.models == (["None", *names] if api[tag]["model_list"] == ["None"] else api[tag]["model_list"])


def test_header_shapes_are_the_file_shapes(model_folder):
    path = model_folder[0] / "canny_a.safetensors"
    with safe_open(str(path), "pt") as f:
        expected = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    assert families.read_safetensors_shapes(path) == expected


def test_family_from_shapes_then_name(model_folder, tmp_path):
    folder, expected = model_folder
    for name, family in expected.items():
        assert families.model_family(folder / name, name) == family, name
    assert families.family_from_file(folder / "t2i_xl_openpose.pth") is None  # a pickle: only its name tells
    broken = tmp_path / "control_sd15_broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    assert families.family_from_file(broken) is None and families.model_family(broken) == "sd1"
    assert [families.family_from_name(n) for n in ("x_sd15_canny", "sd21_depth", "diffusers_xl_canny", "foo")] == [
        "sd1", "sd2", "sdxl", None]


def test_family_cache_sees_a_replaced_file(tmp_path):
    path = write_controlnet(tmp_path / "model.safetensors", "sd1")
    assert families.model_family(path) == "sd1"
    stat = path.stat()
    write_controlnet(path, "sdxl")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert families.model_family(path) == "sdxl"


def test_diffusers_folder_family_from_its_weights(tmp_path):
    folder = tmp_path / "controlnet-canny-sdxl-small"
    write_controlnet(folder / "diffusion_pytorch_model.safetensors", "sdxl")
    (folder / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel"}))
    assert families.family_from_file(folder) == "sdxl"


def test_unknown_families_are_compatible():
    assert families.compatible(None, "sd1") and families.compatible("sdxl", None)
    assert families.compatible("sd1", "sd1") and not families.compatible("sdxl", "sd1")
