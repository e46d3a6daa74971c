"""The panel alone in a page: for the browser test, for trying the panel without A1111, and for the standalone
server to mount (`build_demo(...)` returns a `gr.Blocks`; the server may also call `build_panel` itself).

    python -m lib_controlnet.ui.demo_app --models DIR [--port 7861] [--units 3] [--tab txt2img]

Besides the panel it has the generation width/height sliders ("send dimensions" writes them, Pixel Perfect
previews read them) and a button that shows each unit's state as the API JSON `process()` would receive.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

import gradio as gr

from lib_controlnet.models.registry import ModelRegistry
from lib_controlnet.preprocessors import Registry, default_registry

from .panel import PanelStates, build_panel
from .serialise import display_json

SHOW_STATE_ID = "cn_demo_show_state"


def state_box_id(index: int) -> str:
    return f"cn_demo_unit_{index}_json"


def build_demo(models: ModelRegistry, *, preprocessors: Registry | None = None, unit_count: int = 3,
               tab: str = "txt2img", checkpoint_family: Callable[[], str | None] | None = None,
               total_slots: int | None = None) -> gr.Blocks:
    preprocessors = preprocessors or default_registry()
    with gr.Blocks(title="ControlNet panel", analytics_enabled=False) as demo:
        gr.Markdown("## ControlNet panel (standalone)")
        with gr.Row():
            width = gr.Slider(label="Width", minimum=64, maximum=2048, step=8, value=512, elem_id=f"{tab}_width")
            height = gr.Slider(label="Height", minimum=64, maximum=2048, step=8, value=512, elem_id=f"{tab}_height")
        panel: PanelStates = build_panel(tab, unit_count, models=models, preprocessors=preprocessors,
                                         checkpoint_family=checkpoint_family, send_dimensions_targets=(width, height),
                                         total_slots=total_slots, open=True)
        show = gr.Button("Show unit states (API JSON)", elem_id=SHOW_STATE_ID)
        with gr.Row():
            boxes = [gr.Textbox(label=f"Unit {i} state", lines=12, max_lines=40, elem_id=state_box_id(i))
                     for i in range(unit_count)]
        panel.sync_on(show).then(fn=lambda *states: [display_json(s) for s in states],
                                 inputs=list(panel[:unit_count]), outputs=boxes, queue=False,
                                 show_progress="hidden")
    demo.controlnet_panel = panel  # for callers that wire more events
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", action="append", default=[], help="a ControlNet model folder (repeatable)")
    parser.add_argument("--port", type=int, default=7861)
    parser.add_argument("--units", type=int, default=3)
    parser.add_argument("--tab", choices=("txt2img", "img2img"), default="txt2img")
    parser.add_argument("--family", choices=("sd1", "sd2", "sdxl"), default=None,
                        help="pretend the loaded checkpoint is of this family (filters the model list)")
    args = parser.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    demo = build_demo(ModelRegistry(args.models), unit_count=args.units, tab=args.tab,
                      checkpoint_family=(lambda: args.family))
    demo.queue().launch(server_name="127.0.0.1", server_port=args.port)


if __name__ == "__main__":
    main()
