"""mobile_sam: SAM's automatic masks from MobileSAM (mobile_sam.pt), each painted in its own colour."""

from ..declaration import Preprocessor, neural

PREPROCESSORS = (
    Preprocessor(name="mobile_sam", run=neural("mobile_sam", "mobile_sam"), tags=("Segmentation",),
                 weight_file="mobile_sam.pt"),
)
