"""The control-type filter: which preprocessors and models the dropdowns list for "Canny", "OpenPose", ...

The per-type lists are `/controlnet/control_types`' (`lib_controlnet.api.info.control_types`, the reference's
algorithm), computed over the models that fit the loaded checkpoint's family. Every filtered preprocessor
list starts with "none", as the reference's does, so an already processed map can be used under any type.

Unlike the reference, a type never leaves the user without a model when the family has some: when no model
name mentions the type (the demo ControlNet, a file renamed by its user), every model of the family is listed.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from lib_controlnet.api.info import control_types
from lib_controlnet.models.registry import NO_MODEL, ModelRegistry
from lib_controlnet.preprocessors import Registry

from .model_family import compatible, model_family

ALL = "All"


@dataclass(frozen=True)
class TypeChoices:
    modules: list[str]  # preprocessor labels, "none" first
    models: list[str]  # model names, "None" first
    default_module: str
    default_model: str
    every_model: bool = False  # no model name matched the type, so the list is every model of the family


def type_names(preprocessors: Registry) -> list[str]:
    """"All" and every control type a registered preprocessor serves."""
    return preprocessors.tags()


def models_for_family(models: ModelRegistry, checkpoint_family: str | None, *, refresh: bool = False) -> list[str]:
    """Model names in listing order, without those made for another SD family than the checkpoint's."""
    if refresh:
        models.refresh()
    return [e.name for e in models.entries() if compatible(model_family(e.path, e.name), checkpoint_family)]


def type_choices(control_type: str, preprocessors: Registry, model_names: list[str],
                 union_models: Collection[str] = ()) -> TypeChoices:
    """The dropdown lists and defaults for one control type (an unknown type lists everything); `union_models`:
    names of union model files, listed under the types a union serves."""
    types = control_types(preprocessors, model_names, union_models)
    entry = types.get(control_type) or types[ALL]
    modules = list(entry["module_list"])
    none = preprocessors.get("none")
    none_label = none.label if none is not None else "none"
    if none_label not in modules:
        modules.insert(0, none_label)
    models = list(entry["model_list"])
    if NO_MODEL not in models:
        models.insert(0, NO_MODEL)
    default_model = entry["default_model"]
    every_model = models == [NO_MODEL] and bool(model_names)
    if every_model:
        models = [NO_MODEL, *model_names]
        default_model = model_names[0]
    default_module = entry["default_option"]
    default = preprocessors.get(default_module)
    return TypeChoices(
        modules=modules,
        models=models,
        default_module=default.label if default is not None else default_module,
        default_model=default_model,
        every_model=every_model,
    )


def keep_or_default(current: str, choices: list[str], default: str) -> str:
    """The current selection when the new list still has it, else the type's default."""
    return current if current in choices else default
