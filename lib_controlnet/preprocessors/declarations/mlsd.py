"""M-LSD straight lines (mlsd_large_512_fp32.pth), with the reference's two thresholds."""

from ..declaration import Preprocessor, Slider, neural

PREPROCESSORS = (
    Preprocessor(name="mlsd", run=neural("mlsd", "mlsd", "slider_1", "slider_2"), tags=("MLSD",), priority=100,
                 slider_1=Slider("MLSD Value Threshold", 0.1, 0.01, 2.0),
                 slider_2=Slider("MLSD Distance Threshold", 0.1, 0.01, 20.0),
                 weight_file="mlsd_large_512_fp32.pth", soft_injection_in_hires=True),
)
