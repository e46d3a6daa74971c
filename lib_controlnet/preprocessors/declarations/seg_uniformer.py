"""seg_ufade20k: ADE20K classes by UniFormer-S + UPerNet (upernet_global_small.pth), the reference's
"segmentation" module."""

from ..declaration import Preprocessor, neural

PREPROCESSORS = (
    Preprocessor(name="segmentation", label="seg_ufade20k", run=neural("uniformer", "seg_ufade20k"),
                 tags=("Segmentation",), weight_file="upernet_global_small.pth"),
)
