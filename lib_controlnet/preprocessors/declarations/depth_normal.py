"""Depth and normal maps: MiDaS DPT-Hybrid (depth_midas, normal_midas), Depth Anything V1 and V2, normal_bae."""

from ..declaration import Preprocessor, Slider, neural

MIDAS_FILE = "dpt_hybrid-midas-501f0c75.pt"

PREPROCESSORS = (
    Preprocessor(name="depth", label="depth_midas", run=neural("midas", "depth_midas"), tags=("Depth",),
                 priority=100, weight_file=MIDAS_FILE),
    Preprocessor(name="normal_map", label="normal_midas", run=neural("midas", "normal_midas", "slider_1"),
                 tags=("NormalMap",), slider_1=Slider("Normal Background Threshold", 0.4, 0.0, 1.0),
                 weight_file=MIDAS_FILE),
    Preprocessor(name="depth_anything", run=neural("depth_anything", "depth_anything"), tags=("Depth",),
                 weight_file="depth_anything_vitl14.pth (or depth_anything_vit{b,s}14.pth)"),
    Preprocessor(name="depth_anything_v2", run=neural("depth_anything", "depth_anything_v2"), tags=("Depth",),
                 weight_file="depth_anything_v2_vitl.safetensors (or depth_anything_v2_vit{l,b,s}.pth)"),
    Preprocessor(name="normal_bae", run=neural("normal_bae", "normal_bae"), tags=("NormalMap",), priority=100,
                 weight_file="scannet.pt"),
)
