from annotator.recolor import recolor_intensity, recolor_luminance

from ..declaration import RESOLUTION_UNUSED, Preprocessor, Slider

GAMMA = Slider("Gamma Correction", 1.0, 0.1, 2.0, step=0.001)

PREPROCESSORS = (
    Preprocessor(name="recolor_luminance", run=lambda image, p: recolor_luminance(image, p.slider_1),
                 tags=("Recolor",), priority=100, resolution=RESOLUTION_UNUSED, slider_1=GAMMA, control="recolor"),
    Preprocessor(name="recolor_intensity", run=lambda image, p: recolor_intensity(image, p.slider_1),
                 tags=("Recolor",), resolution=RESOLUTION_UNUSED, slider_1=GAMMA, control="recolor"),
)
