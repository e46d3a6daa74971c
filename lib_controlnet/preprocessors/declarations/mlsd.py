from ..declaration import Preprocessor, Slider


def _mlsd(image, p):
    from annotator.neural.mlsd import mlsd

    return mlsd(image, p.resolution, p.slider_1, p.slider_2)


PREPROCESSORS = (
    Preprocessor(name="mlsd", run=_mlsd, tags=("MLSD",), priority=100,
                 slider_1=Slider("MLSD Value Threshold", 0.1, 0.01, 2.0),
                 slider_2=Slider("MLSD Distance Threshold", 0.1, 0.01, 20.0),
                 weight_file="mlsd_large_512_fp32.pth", soft_injection_in_hires=True),
)
