"""The ControlNet panel (gradio), shared by A1111's Script and the standalone host.

    from lib_controlnet.ui import build_panel
    states = build_panel("txt2img", 3, models=registry, preprocessors=default_registry(), total_slots=10)

Modules: panel (accordion and tabs), unit_panel (one unit's widgets and events), unit_values (widget values
<-> Unit), serialise (Unit <-> API JSON), unit_checks (the status line), preview (run-preprocessor),
sliders, control_type_filter, model_family (family from safetensors headers), canvas, tab_titles,
elem_ids, compat (gradio 3.41 / 4.x), demo_app (the panel alone in a page).
"""

from .panel import PanelStates, build_panel
from .unit_panel import UnitControls

__all__ = ["PanelStates", "UnitControls", "build_panel"]
