"""depth_hand_refiner is not implemented here: it answers 501 and says why.

The reference runs MeshGraphormer through the `handrefinerportable` wheel: mediapipe's hand landmarker
(hand_landmarker.task, shipped in that wheel, not in mediapipe's) finds the hands; an HRNet-W64 and three
Graphormer encoders (graphormer_hand_state_dict.bin, hr16/ControlNet-HandRefiner-pruned) regress a MANO hand
mesh per crop; the mesh is ray-cast into a depth map. The mesh's faces, joint regressor and up-sampling
matrices come from the MANO model (MANO_RIGHT.pkl, licensed by the MPI for research only, distributed as a
chumpy pickle, which this extension never unpickles) and MeshGraphormer's own data files (a scipy sparse .npz
and torch sparse tensors). Without a safe copy of that hand-model data the module cannot produce a real map,
and a made-up one would be worse than an error.
"""

from __future__ import annotations

import numpy as np

from lib_controlnet.errors import MissingDependencyError

from ..util import hwc3

MISSING = (
    "depth_hand_refiner is not available in this extension: it needs MeshGraphormer (HRNet-W64 + Graphormer, "
    "graphormer_hand_state_dict.bin from https://huggingface.co/hr16/ControlNet-HandRefiner-pruned), the MANO "
    "hand model (MANO_RIGHT.pkl from https://mano.is.tue.mpg.de, a chumpy pickle under a research-only "
    "licence, which this extension does not unpickle) and mediapipe's hand_landmarker.task; none of these is "
    "implemented or loaded here. Use depth_midas, depth_anything_v2 or depth_zoe for a depth map, or the "
    "reference extension for hand refinement"
)


def depth_hand_refiner(image: np.ndarray, resolution: float) -> np.ndarray:
    hwc3(image)  # a bad image is still reported as such first
    raise MissingDependencyError(MISSING, field="module")
