"""What `/controlnet/module_list` (and the UI's dropdown) shows: names or labels, sorted, with sliders."""

from __future__ import annotations

from .registry import Registry


def module_list(registry: Registry, alias_names: bool = False) -> list[str]:
    """Module names (or labels, with `alias_names`) in the reference's order."""
    return [p.label if alias_names else p.name for p in registry.sorted()]


def module_detail(registry: Registry, alias_names: bool = False) -> dict[str, dict]:
    """{module: {"model_free": bool, "sliders": [visible sliders as {name, value, min, max, step}]}}."""
    return {
        (p.label if alias_names else p.name): {
            "model_free": p.model_free,
            "sliders": [s.api_json() for s in p.visible_sliders],
        }
        for p in registry.sorted()
    }
