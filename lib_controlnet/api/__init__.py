"""The /controlnet/* HTTP routes as a FastAPI router, for any host app to mount:

    app.include_router(create_router())

Each group of routes lives in its own module with an `add_..._route(router, ...)` function; routes that
need the model list or settings join them the same way. Errors leave through `routing.ControlNetRoute`.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter

from lib_controlnet.models.registry import ModelRegistry
from lib_controlnet.preprocessors import Registry, ResultCache, default_cache, default_registry

from .detect import add_detect_route
from .info import add_info_routes
from .modules import add_module_list_route
from .openpose_render import add_render_openpose_route
from .routing import ControlNetRoute


def create_router(
    registry: Registry | None = None,
    cache: ResultCache | None = None,
    *,
    models: ModelRegistry | None = None,
    unit_count: Callable[[], int] = lambda: 3,
) -> APIRouter:
    """Routes bound to `registry` (default: the built-in preprocessors) and `cache` (default: the shared
    result cache, so a map the UI made is not recomputed for the API). With `models`, also version,
    model_list, control_types and settings (`unit_count` reads the host's setting)."""
    registry = registry or default_registry()
    cache = cache or default_cache()
    router = APIRouter(route_class=ControlNetRoute)
    if models is not None:
        add_info_routes(router, registry, models, unit_count)
    add_module_list_route(router, registry)
    add_detect_route(router, registry, cache)
    add_render_openpose_route(router)
    return router


__all__ = ["ControlNetRoute", "create_router"]
