"""DSINE surface normals (dsine.pt), with the reference's field-of-view and iteration sliders."""

from ..declaration import Preprocessor, Slider, neural

PREPROCESSORS = (
    Preprocessor(name="normal_dsine", run=neural("dsine", "normal_dsine", "slider_1", "slider_2"),
                 tags=("NormalMap",), slider_1=Slider("Fov", 60, 0, 360, step=0.1),
                 slider_2=Slider("Iterations", 5, 1, 20, step=1), weight_file="dsine.pt"),
)
