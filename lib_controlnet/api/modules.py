"""GET /controlnet/module_list: the preprocessors, in the reference's order, with their visible sliders."""

from __future__ import annotations

from fastapi import APIRouter

from lib_controlnet.preprocessors import Registry, module_detail, module_list


def add_module_list_route(router: APIRouter, registry: Registry) -> None:
    @router.get("/controlnet/module_list")
    def module_list_route(alias_names: bool = False) -> dict:
        return {"module_list": module_list(registry, alias_names),
                "module_detail": module_detail(registry, alias_names)}
