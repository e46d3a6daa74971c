from annotator.canny import canny

from ..declaration import Preprocessor, Slider

PREPROCESSORS = (
    Preprocessor(
        name="canny",
        run=lambda image, p: canny(image, p.resolution, p.slider_1, p.slider_2),
        tags=("Canny",),
        priority=100,
        slider_1=Slider("Low Threshold", 100, 1, 255, step=1),
        slider_2=Slider("High Threshold", 200, 1, 255, step=1),
        soft_injection_in_hires=True,
    ),
)
