"""Reference family: no model — the UNet attends to the image itself (see lib_controlnet.controls.reference).
The map is the image; Style Fidelity (threshold_a) is read by the hook."""

from annotator.util import hwc3

from ..declaration import RESOLUTION_UNUSED, Preprocessor, Slider

STYLE_FIDELITY = Slider("Style Fidelity (only for Balanced mode)", 0.5, 0.0, 1.0)


def _reference(name: str, priority: int = 0) -> Preprocessor:
    return Preprocessor(name=name, run=lambda image, p: hwc3(image), tags=("Reference",), priority=priority,
                        resolution=RESOLUTION_UNUSED, slider_1=STYLE_FIDELITY, model_free=True, control="reference")


PREPROCESSORS = (
    _reference("reference_only", priority=100),
    _reference("reference_adain"),
    _reference("reference_adain+attn"),
)
