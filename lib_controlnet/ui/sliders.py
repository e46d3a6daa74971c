"""The three preprocessor sliders (resolution, threshold A, threshold B) as the selected preprocessor declares them.

`slider_states` is the pure part (what each slider shows); `slider_updates` turns it into gradio updates.
A slider the preprocessor does not have is hidden and set to its declared placeholder value, so the unit
carries the same numbers the reference's UI sends. With Pixel Perfect on, the resolution is computed from
the image and target sizes, so its slider is hidden too.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from lib_controlnet.preprocessors import Preprocessor, Slider

# The reference's initial slider settings, before any preprocessor is chosen.
RESOLUTION_LABEL = "Preprocessor resolution"
THRESHOLD_A_LABEL = "Threshold A"
THRESHOLD_B_LABEL = "Threshold B"


@dataclass(frozen=True)
class SliderState:
    label: str
    value: float
    minimum: float
    maximum: float
    step: float
    visible: bool

    def update(self) -> dict:
        return gr.update(label=self.label, value=self.value, minimum=self.minimum, maximum=self.maximum,
                         step=self.step, visible=self.visible)


def _state(slider: Slider, fallback_label: str, visible: bool) -> SliderState:
    label = slider.label if slider.visible else fallback_label
    value = int(slider.value) if float(slider.value).is_integer() and float(slider.step).is_integer() else slider.value
    return SliderState(label, value, slider.minimum, slider.maximum, slider.step, visible)


def slider_states(preprocessor: Preprocessor, pixel_perfect: bool = False) -> tuple[SliderState, SliderState,
                                                                                     SliderState]:
    """(resolution, threshold A, threshold B) for `preprocessor`, values reset to its defaults."""
    resolution = preprocessor.resolution
    return (
        _state(resolution, RESOLUTION_LABEL, resolution.visible and not pixel_perfect),
        _state(preprocessor.slider_1, THRESHOLD_A_LABEL, preprocessor.slider_1.visible),
        _state(preprocessor.slider_2, THRESHOLD_B_LABEL, preprocessor.slider_2.visible),
    )


def slider_updates(preprocessor: Preprocessor | None, pixel_perfect: bool = False) -> tuple[dict, dict, dict]:
    """gradio updates for the three sliders; no change at all for an unknown preprocessor."""
    if preprocessor is None:
        return gr.update(), gr.update(), gr.update()
    return tuple(state.update() for state in slider_states(preprocessor, pixel_perfect))


def resolution_visibility(preprocessor: Preprocessor | None, pixel_perfect: bool) -> dict:
    """Toggling Pixel Perfect shows or hides the resolution slider without touching its value."""
    if preprocessor is None:
        return gr.update()
    return gr.update(visible=preprocessor.resolution.visible and not pixel_perfect)
