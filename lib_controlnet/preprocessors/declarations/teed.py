"""TEED soft edges (7_model.pth) and Anyline (MTEED.pth edges with lineart_standard's lines over them), with
the reference's "Safe Steps" slider and Anyline's 1280 default resolution."""

from ..declaration import Preprocessor, Slider, neural

SAFE_STEPS = Slider("Safe Steps", 2, 0, 10, step=1)

PREPROCESSORS = (
    Preprocessor(name="softedge_teed", run=neural("teed", "softedge_teed", "slider_1"), tags=("SoftEdge",),
                 slider_1=SAFE_STEPS, weight_file="7_model.pth"),
    Preprocessor(name="softedge_anyline", run=neural("teed", "softedge_anyline", "slider_1"), tags=("SoftEdge",),
                 resolution=Slider("Resolution", 1280, 64, 2048, step=8), slider_1=SAFE_STEPS,
                 weight_file="MTEED.pth"),
)
