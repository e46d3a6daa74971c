from annotator.threshold import threshold

from ..declaration import Preprocessor, Slider

PREPROCESSORS = (
    Preprocessor(name="threshold", run=lambda image, p: threshold(image, p.resolution, p.slider_1),
                 slider_1=Slider("Binarization Threshold", 127, 0, 255)),
)
