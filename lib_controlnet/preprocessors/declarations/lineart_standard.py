from annotator.lineart_standard import lineart_standard

from ..declaration import Preprocessor

PREPROCESSORS = (
    Preprocessor(name="lineart_standard", label="lineart_standard (from white bg & black line)",
                 run=lambda image, p: lineart_standard(image, p.resolution), tags=("Lineart",), priority=100),
)
