"""GET /controlnet/version, model_list, control_types and settings, with the reference's response shapes."""

from __future__ import annotations

from collections.abc import Callable, Collection

from fastapi import APIRouter

from lib_controlnet.models.headers import cached_header
from lib_controlnet.models.registry import ModelRegistry
from lib_controlnet.preprocessors import Registry

API_VERSION = 3  # the reference's /controlnet/version; clients branch on it

# Which model names a control type lists besides those containing the type's own name (the reference's table).
MODEL_ALIASES = {
    "instructp2p": ("ip2p",),
    "segmentation": ("seg",),
    "normalmap": ("normal",),
    "t2i-adapter": ("t2i_adapter", "t2iadapter", "t2ia"),
    "ip-adapter": ("ip_adapter", "ipadapter"),
    "openpose": ("openpose", "densepose"),
    "instant-id": ("instant_id", "instantid"),
    "scribble": ("sketch",),
    "tile": ("blur",),
}
# Union / ProMax models serve these types too.
UNION_TYPES = ("openpose", "depth", "softedge", "scribble", "canny", "lineart", "mlsd", "normalmap",
               "segmentation", "inpaint", "tile")


def control_types(preprocessors: Registry, model_names: list[str], union_models: Collection[str] = ()) -> dict:
    """The reference's algorithm: per tag, its preprocessors (labels), matching models, and defaults.

    Union models are listed under the types a union serves when their name says "union" (the reference's
    rule) or when their file is one (`union_models`: xinsir's files are often kept as
    `diffusion_pytorch_model_promax.safetensors`)."""
    ordered = preprocessors.sorted()
    result = {"All": {"module_list": [p.label for p in ordered], "model_list": ["None", *model_names],
                      "default_option": "none", "default_model": "None"}}
    for tag in preprocessors.tags()[1:]:
        key = tag.lower()
        needles = (key, *MODEL_ALIASES.get(key, ()))
        models = [m for m in model_names if any(n in m.lower() for n in needles)
                  or (key in UNION_TYPES and ("union" in m.lower() or m in union_models))]
        modules = [p.label for p in ordered if tag in p.tags]
        default_option = next((m for m in modules if m != "none"), "none")
        default_model = next((m for m in models if "11" in m.split("[")[0]), models[0] if models else "None")
        result[tag] = {"module_list": modules, "model_list": ["None", *models], "default_option": default_option,
                       "default_model": default_model}
    return result


def union_model_names(models: ModelRegistry) -> set[str]:
    """Models whose file is a ControlNet Union by its header, whatever their name."""
    return {e.name for e in models.entries() if (cached_header(e.path) or (None, None))[1] == "controlnet_union"}


def add_info_routes(
    router: APIRouter, preprocessors: Registry, models: ModelRegistry, unit_count: Callable[[], int]
) -> None:
    @router.get("/controlnet/version")
    def version() -> dict:
        return {"version": API_VERSION}

    @router.get("/controlnet/model_list")
    def model_list(update: bool = True) -> dict:
        return {"model_list": models.list_names(refresh=update)}

    @router.get("/controlnet/control_types")
    def control_types_route() -> dict:
        return {"control_types": control_types(preprocessors, models.list_names(), union_model_names(models))}

    @router.get("/controlnet/settings")
    def settings() -> dict:
        return {"control_net_unit_count": unit_count()}
