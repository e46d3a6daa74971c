# New (not in the reference's list): the reference turns a drawn canvas into a scribble only implicitly
# ("canvas scribble mode") or through `invert`; this module does it explicitly for either paper colour.
from annotator.sketch import scribble_sketch

from ..declaration import Preprocessor, Slider

PREPROCESSORS = (
    Preprocessor(name="scribble_sketch", label="scribble_sketch (user drawing)",
                 run=lambda image, p: scribble_sketch(image, p.resolution, p.slider_1),
                 tags=("Scribble",), accepts_mask=True,
                 slider_1=Slider("Stroke Threshold", 64, 1, 254, step=1)),
)
