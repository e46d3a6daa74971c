"""depth_hand_refiner (MeshGraphormer hand meshes rendered as depth): listed under the reference's name and
sliders so that its payloads and infotexts are understood; it answers 501 saying what it would need (see
annotator/neural/hand_refiner.py)."""

from ..declaration import Preprocessor, neural

PREPROCESSORS = (
    Preprocessor(name="depth_hand_refiner", run=neural("hand_refiner", "depth_hand_refiner"), tags=("Depth",),
                 weight_file="graphormer_hand_state_dict.bin (+ the MANO hand model); not implemented here"),
)
