"""Depth and normal maps: MiDaS DPT-Hybrid (depth_midas, normal_midas), Depth Anything V2, normal_bae."""

from ..declaration import Preprocessor, Slider

MIDAS_FILE = "dpt_hybrid-midas-501f0c75.pt"


def _depth_midas(image, p):
    from annotator.neural.midas import depth_midas

    return depth_midas(image, p.resolution)


def _normal_midas(image, p):
    from annotator.neural.midas import normal_midas

    return normal_midas(image, p.resolution, p.slider_1)


def _depth_anything_v2(image, p):
    from annotator.neural.depth_anything import depth_anything_v2

    return depth_anything_v2(image, p.resolution)


def _normal_bae(image, p):
    from annotator.neural.normal_bae import normal_bae

    return normal_bae(image, p.resolution)


PREPROCESSORS = (
    Preprocessor(name="depth", label="depth_midas", run=_depth_midas, tags=("Depth",), priority=100,
                 weight_file=MIDAS_FILE),
    Preprocessor(name="normal_map", label="normal_midas", run=_normal_midas, tags=("NormalMap",),
                 slider_1=Slider("Normal Background Threshold", 0.4, 0.0, 1.0), weight_file=MIDAS_FILE),
    Preprocessor(name="depth_anything_v2", run=_depth_anything_v2, tags=("Depth",),
                 weight_file="depth_anything_v2_vitl.safetensors (or depth_anything_v2_vit{l,b,s}.pth)"),
    Preprocessor(name="normal_bae", run=_normal_bae, tags=("NormalMap",), priority=100, weight_file="scannet.pt"),
)
