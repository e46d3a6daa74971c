"""The extension's settings and command-line flags as data, with the reference's keys, defaults and labels.

The A1111 adapter turns `SETTINGS` into `shared.OptionInfo`s on the settings page (section `SECTION`) and
`FLAGS` into arguments in `preload.py`; the standalone host reads the same tables, so both hosts know one
set of keys and defaults. Keys are the reference's, so existing `config.json` files keep their values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SECTION = ("control_net", "ControlNet")


@dataclass(frozen=True)
class Setting:
    key: str
    default: Any
    label: str
    component: str  # "textbox", "checkbox", "slider" or "dropdown"
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] | None = None
    needs_reload_ui: bool = False  # the UI is built from it (unit count...): takes effect after a UI reload
    # Why nothing reads it yet; shown on the settings page, so that no one changes it and expects an effect.
    # It stays a setting so that values from the reference's config.json keep their meaning for later.
    unused: str = ""

    @property
    def page_label(self) -> str:
        return f"{self.label} (not used yet: {self.unused})" if self.unused else self.label

    @property
    def component_args(self) -> dict[str, Any]:
        """Keyword arguments for the component (gradio's names), beyond its value."""
        if self.component == "slider":
            return {"minimum": self.minimum, "maximum": self.maximum, "step": self.step}
        if self.component == "dropdown":
            return {"choices": list(self.choices or ())}
        if self.component == "checkbox":
            return {"interactive": True}
        return {}


SETTINGS: tuple[Setting, ...] = (
    Setting("control_net_detectedmap_dir", "detected_maps", "Directory for detected maps auto saving", "textbox"),
    Setting("control_net_models_path", "",
            "Extra path to scan for ControlNet models (e.g. training output directory)", "textbox"),
    Setting("control_net_modules_path", "",
            "Path to directory containing annotator model directories (overrides corresponding command line flag)",
            "textbox"),
    Setting("control_net_unit_count", 3, "Multi-ControlNet: ControlNet unit number", "slider",
            minimum=1, maximum=10, step=1, needs_reload_ui=True),
    Setting("control_net_model_cache_size", 2, "Model cache size", "slider", minimum=1, maximum=10, step=1),
    Setting("control_net_inpaint_blur_sigma", 7, "ControlNet inpainting Gaussian blur sigma", "slider",
            minimum=0, maximum=64, step=1),
    Setting("control_net_no_detectmap", False, "Do not append detectmap to output", "checkbox"),
    Setting("control_net_detectmap_autosaving", False, "Allow detectmap auto saving", "checkbox"),
    Setting("control_net_allow_script_control", False, "Allow other script to control this extension", "checkbox"),
    Setting("control_net_sync_field_args", True, "Paste ControlNet parameters in infotext", "checkbox"),
    Setting("controlnet_show_batch_images_in_ui", False, "Show batch images in gradio gallery output", "checkbox",
            unused="no batch input mode"),
    Setting("controlnet_increment_seed_during_batch", False,
            "Increment seed after each controlnet batch iteration", "checkbox", unused="no batch input mode"),
    Setting("controlnet_disable_openpose_edit", False, "Disable openpose edit", "checkbox",
            unused="no openpose editor"),
    Setting("controlnet_disable_photopea_edit", False, "Disable photopea edit", "checkbox", unused="no Photopea"),
    Setting("controlnet_photopea_warning", True, "Photopea popup warning", "checkbox", unused="no Photopea"),
    Setting("controlnet_ignore_noninpaint_mask", False,
            "Ignore mask on ControlNet input image if control type is not inpaint", "checkbox"),
    Setting("controlnet_clip_detector_on_cpu", False, "Load CLIP preprocessor model on CPU", "checkbox",
            unused="no CLIP preprocessors"),
    Setting("controlnet_control_type_dropdown", False, "Display control type as dropdown", "checkbox",
            needs_reload_ui=True),
    # The reference reads these two but never puts them on the settings page; here they are real settings.
    Setting("control_net_models_sort_models_by", "name", "Sort ControlNet models by", "dropdown",
            choices=("name", "date", "path name")),
    Setting("control_net_models_name_filter", "", "Only list ControlNet models whose file name contains",
            "textbox"),
)

SETTINGS_BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}


def defaults() -> dict[str, Any]:
    return {s.key: s.default for s in SETTINGS}


def read(options: Mapping[str, Any] | None, key: str) -> Any:
    """A setting's value from a host's option store (A1111's `opts.data`, a dict), or its default.

    A value of the wrong kind (hand-edited config.json) falls back to the default rather than breaking
    generation; a slider value outside its range is clamped to it, like the settings page would.
    """
    setting = SETTINGS_BY_KEY[key]
    value = (options or {}).get(key, setting.default)
    default = setting.default
    if isinstance(default, bool):
        return value if isinstance(value, bool) else default
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            return default
        value = int(value)
        if setting.minimum is not None:
            value = max(int(setting.minimum), min(int(setting.maximum), value))
        return value
    if setting.choices is not None and value not in setting.choices:
        return default
    return value if isinstance(value, str) else default


@dataclass(frozen=True)
class Flag:
    """A command-line flag, as argparse arguments."""

    name: str
    help: str
    type: type | None = str  # None: a store_true switch
    default: Any = None
    choices: tuple[str, ...] | None = None

    @property
    def dest(self) -> str:
        return self.name.lstrip("-").replace("-", "_")


FLAGS: tuple[Flag, ...] = (
    Flag("--controlnet-dir", "Path to directory with ControlNet models"),
    Flag("--controlnet-annotator-models-path", "Path to directory with annotator model directories"),
    Flag("--no-half-controlnet",
         "do not switch the ControlNet models to 16-bit floats (only needed without --no-half)", type=None),
    Flag("--controlnet-preprocessor-cache-size", "Cache size for controlnet preprocessor results",
         type=int, default=16),
    Flag("--controlnet-loglevel", "Set the log level (DEBUG, INFO, WARNING, ERROR, CRITICAL)", default="INFO",
         choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
    Flag("--controlnet-tracemalloc", "Enable memory tracing.", type=None),
)


def add_flags(parser) -> None:
    """Register `FLAGS` on an argparse parser (A1111 calls `preload(parser)` with its own)."""
    for flag in FLAGS:
        if flag.type is None:
            parser.add_argument(flag.name, action="store_true", help=flag.help, default=flag.default)
        else:
            kwargs = {"type": flag.type, "help": flag.help, "default": flag.default}
            if flag.choices is not None:
                kwargs["choices"] = list(flag.choices)
            parser.add_argument(flag.name, **kwargs)
