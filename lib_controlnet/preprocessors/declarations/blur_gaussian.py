from annotator.blur import blur_gaussian

from ..declaration import Preprocessor, Slider

PREPROCESSORS = (
    Preprocessor(name="blur_gaussian", run=lambda image, p: blur_gaussian(image, p.resolution, p.slider_1),
                 tags=("Tile",), slider_1=Slider("Sigma", 9.0, 0.01, 64.0)),
)
