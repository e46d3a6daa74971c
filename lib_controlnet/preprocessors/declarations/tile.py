"""Tile family. tile_colorfix(+sharp) pass the image through: their sliders drive the hook, which blends the
denoised latent's low frequencies towards the hint's (variation = blur radius; sharpness = detail weight)."""

from annotator.tile import tile_resample
from annotator.util import hwc3

from ..declaration import RESOLUTION_UNUSED, Preprocessor, Slider

VARIATION = Slider("Variation", 8.0, 3.0, 32.0, step=1.0)

PREPROCESSORS = (
    Preprocessor(name="tile_resample", aliases=("tile_gaussian",),  # its name before 1.1.1xx
                 run=lambda image, p: tile_resample(image, p.slider_1), tags=("Tile",), priority=100,
                 resolution=RESOLUTION_UNUSED, slider_1=Slider("Down Sampling Rate", 1.0, 1.0, 8.0)),
    Preprocessor(name="tile_colorfix", run=lambda image, p: hwc3(image), tags=("Tile",),
                 resolution=RESOLUTION_UNUSED, slider_1=VARIATION, control="colorfix"),
    Preprocessor(name="tile_colorfix+sharp", run=lambda image, p: hwc3(image), tags=("Tile",),
                 resolution=RESOLUTION_UNUSED, slider_1=VARIATION, slider_2=Slider("Sharpness", 1.0, 0.0, 2.0),
                 control="colorfix"),
)
