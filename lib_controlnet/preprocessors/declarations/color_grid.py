from annotator.color_grid import color_grid

from ..declaration import Preprocessor

PREPROCESSORS = (
    Preprocessor(name="color", label="t2ia_color_grid", run=lambda image, p: color_grid(image, p.resolution),
                 tags=("T2I-Adapter",)),
)
