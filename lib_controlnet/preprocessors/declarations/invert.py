from annotator.invert import invert

from ..declaration import NO_RESOLUTION, Preprocessor

PREPROCESSORS = (
    Preprocessor(name="invert", label="invert (from white bg & black line)",
                 run=lambda image, params: invert(image), tags=("Canny", "Lineart", "Scribble", "MLSD"),
                 priority=20, resolution=NO_RESOLUTION),
)
