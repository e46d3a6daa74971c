from annotator.xdog import scribble_xdog

from ..declaration import Preprocessor, Slider

PREPROCESSORS = (
    Preprocessor(name="scribble_xdog", run=lambda image, p: scribble_xdog(image, p.resolution, p.slider_1),
                 tags=("Scribble", "SparseCtrl"), slider_1=Slider("XDoG Threshold", 32, 1, 64)),
)
