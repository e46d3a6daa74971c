"""Inpaint family: the map is the image with the mask as alpha. What differs between them happens in the
hook (inpaint_only also pastes the unmasked latent back each step)."""

from annotator.inpaint import inpaint_display, inpaint_map

from ..declaration import NO_RESOLUTION, Detection, Preprocessor


def _inpaint(image, params) -> Detection:
    rgba = inpaint_map(image)
    return Detection(map=rgba, display=inpaint_display(rgba))


PREPROCESSORS = (
    Preprocessor(name="inpaint", label="inpaint_global_harmonious", run=_inpaint, tags=("Inpaint",),
                 resolution=NO_RESOLUTION, accepts_mask=True, requires_mask=True),
    Preprocessor(name="inpaint_only", run=_inpaint, tags=("Inpaint",), priority=100, resolution=NO_RESOLUTION,
                 accepts_mask=True, requires_mask=True, control="inpaint_only"),
)
