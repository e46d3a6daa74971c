# New (not in the reference's list): a segmentation map the user already has, with compression noise removed.
from annotator.flat_segmentation import flat_segmentation

from ..declaration import NO_RESOLUTION, Preprocessor

PREPROCESSORS = (
    Preprocessor(name="seg_passthrough", label="seg_passthrough (flat-colour map)",
                 run=lambda image, p: flat_segmentation(image), tags=("Segmentation",), resolution=NO_RESOLUTION),
)
