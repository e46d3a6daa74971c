"""seg_ofade20k / seg_ofcoco: OneFormer Swin-L semantic segmentation (ADE20K or COCO panoptic classes), the
reference's oneformer_ade20k / oneformer_coco."""

from ..declaration import Preprocessor, neural

PREPROCESSORS = (
    Preprocessor(name="oneformer_ade20k", label="seg_ofade20k", run=neural("oneformer", "seg_ofade20k"),
                 tags=("Segmentation",), priority=100, weight_file="250_16_swin_l_oneformer_ade20k_160k.pth"),
    Preprocessor(name="oneformer_coco", label="seg_ofcoco", run=neural("oneformer", "seg_ofcoco"),
                 tags=("Segmentation",), weight_file="150_16_swin_l_oneformer_coco_100ep.pth"),
)
