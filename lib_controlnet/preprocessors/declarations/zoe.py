"""ZoeDepth metric depth (ZoeD_M12_N.pt) as a near-is-bright map."""

from ..declaration import Preprocessor, neural

PREPROCESSORS = (
    Preprocessor(name="depth_zoe", run=neural("zoe", "depth_zoe"), tags=("Depth",), weight_file="ZoeD_M12_N.pt"),
)
