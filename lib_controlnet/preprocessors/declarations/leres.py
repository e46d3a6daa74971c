"""LeReS depth (res101.pth) and its boosted form (+ latest_net_G.pth), with the reference's two cut-offs."""

from ..declaration import Preprocessor, Slider, neural

REMOVE_NEAR = Slider("Remove Near %", 0, 0, 100, step=0.1)
REMOVE_BACKGROUND = Slider("Remove Background %", 0, 0, 100, step=0.1)

PREPROCESSORS = (
    Preprocessor(name="depth_leres", run=neural("leres", "depth_leres", "slider_1", "slider_2", boost=False),
                 tags=("Depth",), slider_1=REMOVE_NEAR, slider_2=REMOVE_BACKGROUND, weight_file="res101.pth"),
    Preprocessor(name="depth_leres++", run=neural("leres", "depth_leres", "slider_1", "slider_2", boost=True),
                 tags=("Depth",), slider_1=REMOVE_NEAR, slider_2=REMOVE_BACKGROUND,
                 weight_file="res101.pth + latest_net_G.pth"),
)
