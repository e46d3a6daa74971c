"""Inpaint family: the map is the image with the mask as alpha (inpaint_only+lama: with the mask filled by
LaMa). What differs between them happens in the hook (inpaint_only also pastes the unmasked latent back each
step, see lib_controlnet.controls.inpaint_only)."""

from annotator.inpaint import inpaint_display, inpaint_map

from ..declaration import NO_RESOLUTION, Detection, Preprocessor


def _inpaint(image, params) -> Detection:
    rgba = inpaint_map(image)
    return Detection(map=rgba, display=inpaint_display(rgba))


def _lama(image, params) -> Detection:
    from annotator.neural.lama import lama_inpaint

    rgba = lama_inpaint(inpaint_map(image))
    return Detection(map=rgba, display=inpaint_display(rgba))


PREPROCESSORS = (
    Preprocessor(name="inpaint", label="inpaint_global_harmonious", run=_inpaint, tags=("Inpaint",),
                 resolution=NO_RESOLUTION, accepts_mask=True, requires_mask=True),
    Preprocessor(name="inpaint_only", run=_inpaint, tags=("Inpaint",), priority=100, resolution=NO_RESOLUTION,
                 accepts_mask=True, requires_mask=True, control="inpaint_only"),
    # LaMa fills the mask first (at 256 px); its fill also seeds the initial noise. With "Resize and Fill" the
    # padding is outpainted: it is marked as mask before LaMa runs.
    Preprocessor(name="inpaint_only+lama", run=_lama, tags=("Inpaint",), resolution=NO_RESOLUTION, accepts_mask=True,
                 requires_mask=True, weight_file="ControlNetLama.pth", control="inpaint_only", outpaint_first=True),
)
