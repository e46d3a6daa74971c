"""CLIP vision encoders (annotator.neural.clip_vision): they return image embeddings, not maps. The IP-Adapter
ones accept a mask (the CLIP mask), none shows a control mode, as in the reference."""

from ..declaration import RESOLUTION_UNUSED, Preprocessor


def _clip(encoder: str):
    def run(image, params):
        from annotator.neural.clip_vision import clip_embedding

        return clip_embedding(image, encoder)

    run.__qualname__ = f"clip_embedding({encoder})"
    return run


def _encoder(name: str, encoder: str, *, label: str = "", tags=("IP-Adapter",), priority: int = 0,
             accepts_mask: bool = True) -> Preprocessor:
    return Preprocessor(name=name, label=label, run=_clip(encoder), tags=tags, priority=priority,
                        resolution=RESOLUTION_UNUSED, accepts_mask=accepts_mask, returns_image=False,
                        show_control_mode=False, weight_file=f"{encoder}.pth")


PREPROCESSORS = (
    _encoder("ip-adapter_clip_sd15", "clip_h", label="ip-adapter_clip_h", priority=100),
    _encoder("ip-adapter_clip_sdxl", "clip_g", label="ip-adapter_clip_g"),
    _encoder("ip-adapter_clip_sdxl_plus_vith", "clip_h"),
    _encoder("clip_vision", "clip_vitl", label="t2ia_style_clipvision", tags=("T2I-Adapter",), accepts_mask=False),
)
