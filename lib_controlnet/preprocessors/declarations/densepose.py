"""densepose / densepose_parula: DensePose body-part maps from the published TorchScript
(densepose_r50_fpn_dl.torchscript), run only after an audit of what the program can do (see
annotator/neural/torchscript_audit.py)."""

from ..declaration import Preprocessor, neural

FILE = "densepose_r50_fpn_dl.torchscript"

PREPROCESSORS = (
    Preprocessor(name="densepose", label="densepose (pruple bg & purple torso)",  # sic: the reference's label
                 run=neural("densepose", "densepose"), tags=("OpenPose",), weight_file=FILE),
    Preprocessor(name="densepose_parula", label="densepose_parula (black bg & blue torso)",
                 run=neural("densepose", "densepose_parula"), tags=("OpenPose",), weight_file=FILE),
)
