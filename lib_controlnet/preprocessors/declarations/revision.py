"""Revision (SDXL, no model): the CLIP-G image embedding replaces the pooled text part of `y`, noised by
Noise Augmentation (threshold_a); revision_ignore_prompt also zeroes the text context
(lib_controlnet.controls.revision)."""

from ..declaration import RESOLUTION_UNUSED, Preprocessor, Slider
from .clip_vision import _clip

NOISE_AUGMENTATION = Slider("Noise Augmentation", 0.0, 0.0, 1.0)


def _revision(name: str, priority: int = 0) -> Preprocessor:
    return Preprocessor(name=name, run=_clip("clip_g"), tags=("Revision",), priority=priority,
                        resolution=RESOLUTION_UNUSED, slider_1=NOISE_AUGMENTATION, model_free=True,
                        returns_image=False, show_control_mode=False, weight_file="clip_g.pth", control="revision")


PREPROCESSORS = (
    _revision("revision_clipvision", priority=100),
    _revision("revision_ignore_prompt"),
)
