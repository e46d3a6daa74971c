"""The settings table carries the reference's keys, defaults and ranges; the flags parse like its preload.py."""

from __future__ import annotations

import argparse

import pytest

from lib_controlnet.settings import FLAGS, SECTION, SETTINGS, SETTINGS_BY_KEY, add_flags, defaults, read

# reference doc §7: key -> (default, component, range)
REFERENCE_SETTINGS = {
    "control_net_detectedmap_dir": ("detected_maps", "textbox", None),
    "control_net_models_path": ("", "textbox", None),
    "control_net_modules_path": ("", "textbox", None),
    "control_net_unit_count": (3, "slider", (1, 10)),
    "control_net_model_cache_size": (2, "slider", (1, 10)),
    "control_net_inpaint_blur_sigma": (7, "slider", (0, 64)),
    "control_net_no_detectmap": (False, "checkbox", None),
    "control_net_detectmap_autosaving": (False, "checkbox", None),
    "control_net_allow_script_control": (False, "checkbox", None),
    "control_net_sync_field_args": (True, "checkbox", None),
    "controlnet_show_batch_images_in_ui": (False, "checkbox", None),
    "controlnet_increment_seed_during_batch": (False, "checkbox", None),
    "controlnet_disable_openpose_edit": (False, "checkbox", None),
    "controlnet_disable_photopea_edit": (False, "checkbox", None),
    "controlnet_photopea_warning": (True, "checkbox", None),
    "controlnet_ignore_noninpaint_mask": (False, "checkbox", None),
    "controlnet_clip_detector_on_cpu": (False, "checkbox", None),
    "controlnet_control_type_dropdown": (False, "checkbox", None),
    "control_net_models_sort_models_by": ("name", "dropdown", None),
    "control_net_models_name_filter": ("", "textbox", None),
}
NEEDS_RELOAD = {"control_net_unit_count", "controlnet_control_type_dropdown"}  # the others apply at once


def test_every_reference_setting_with_its_default_and_range():
    assert SECTION == ("control_net", "ControlNet")
    assert [s.key for s in SETTINGS] == list(REFERENCE_SETTINGS)
    for key, (default, component, bounds) in REFERENCE_SETTINGS.items():
        setting = SETTINGS_BY_KEY[key]
        assert (setting.default, setting.component) == (default, component), key
        assert type(setting.default) is type(default), key
        if bounds:
            assert (setting.minimum, setting.maximum, setting.step) == (*bounds, 1)
            assert setting.component_args == {"minimum": bounds[0], "maximum": bounds[1], "step": 1}
        assert setting.label and setting.needs_reload_ui == (key in NEEDS_RELOAD)
    assert defaults()["control_net_unit_count"] == 3


@pytest.mark.parametrize(
    "stored, expected",
    [
        ({}, 3),
        ({"control_net_unit_count": 5}, 5),
        ({"control_net_unit_count": 5.0}, 5),  # gradio sliders store floats
        ({"control_net_unit_count": 40}, 10),
        ({"control_net_unit_count": 0}, 1),
        ({"control_net_unit_count": "many"}, 3),
        ({"control_net_unit_count": True}, 3),
    ],
)
def test_read_falls_back_or_clamps_to_what_the_page_allows(stored, expected):
    assert read(stored, "control_net_unit_count") == expected


def test_read_other_kinds():
    assert read(None, "control_net_sync_field_args") is True
    assert read({"control_net_sync_field_args": "no"}, "control_net_sync_field_args") is True
    assert read({"control_net_no_detectmap": True}, "control_net_no_detectmap") is True
    assert read({"control_net_models_sort_models_by": "size"}, "control_net_models_sort_models_by") == "name"
    assert read({"control_net_models_sort_models_by": "date"}, "control_net_models_sort_models_by") == "date"
    assert read({"control_net_models_path": 5}, "control_net_models_path") == ""
    with pytest.raises(KeyError):
        read({}, "not_a_setting")


def test_flags_parse_like_the_references_preload():
    parser = argparse.ArgumentParser()
    add_flags(parser)
    assert {f.name for f in FLAGS} == {
        "--controlnet-dir", "--controlnet-annotator-models-path", "--no-half-controlnet",
        "--controlnet-preprocessor-cache-size", "--controlnet-loglevel", "--controlnet-tracemalloc"}
    empty = parser.parse_args([])
    assert (empty.controlnet_dir, empty.controlnet_preprocessor_cache_size, empty.controlnet_loglevel) == (
        None, 16, "INFO")
    assert not empty.no_half_controlnet and not empty.controlnet_tracemalloc
    given = parser.parse_args(["--controlnet-dir", "/m", "--controlnet-preprocessor-cache-size", "4",
                               "--controlnet-loglevel", "DEBUG", "--no-half-controlnet"])
    assert (given.controlnet_dir, given.controlnet_preprocessor_cache_size, given.controlnet_loglevel,
            given.no_half_controlnet) == ("/m", 4, "DEBUG", True)
    with pytest.raises(SystemExit):
        parser.parse_args(["--controlnet-loglevel", "LOUD"])
    assert [f.dest for f in FLAGS][0] == "controlnet_dir"


def test_a_setting_is_marked_unused_exactly_when_no_code_reads_it():
    """The settings page must not offer a switch that does nothing without saying so."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    sources = [p for d in ("lib_controlnet", "scripts", "standalone", "annotator") for p in (root / d).rglob("*.py")
               if p.name != "settings.py"]
    text = "\n".join(p.read_text(encoding="utf-8") for p in sources)
    for setting in SETTINGS:
        read_somewhere = f'"{setting.key}"' in text
        assert read_somewhere != bool(setting.unused), setting.key
        assert setting.page_label.startswith(setting.label)
        assert ("not used yet" in setting.page_label) == bool(setting.unused)
