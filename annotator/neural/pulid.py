"""ip-adapter_pulid: what PuLID's ID encoder reads of a face, as the reference's preprocessor gathers it
(scripts/preprocessor/pulid.py, after ToTheBeginning/PuLID's `get_id_embedding`):

- `id_ante_embedding` [1, 512]: antelopev2's raw ArcFace embedding of the largest face, as
  instant_id_face_embedding gives it at its default Resolution of 512 (face_analysis.py, onnxruntime);
- the face-features image of the centre-most face (facexlib_faces.py: RetinaFace, alignment to 512 x 512,
  BiSeNet parsing; unrounded, in [0, 1]);
- `id_cond_vit` [1, 768] and `id_vit_hidden` (five [1, 577, 1024] states) of that image from EVA02-CLIP-L-14-336
  (eva_clip.py).

The result is a dict of tensors, `id_vit_hidden` stacked to [5, 1, 577, 1024]: the reference's
`PuLIDProjInput` fields under the same names, which `/controlnet/detect` can hand out and `ipadapter_input`
read back with `torch.load(weights_only=True)` (the reference pickles its dataclass, which needs code to load).
Without onnxruntime it is a 501 with the install command; a missing file is a 404 naming it, its folder and
where it is published; no face a 422 naming the image.
"""

from __future__ import annotations

import numpy as np
import torch

from ..util import hwc3
from .eva_clip import EVA_CLIP, eva_features
from .face_analysis import instant_id_face_embedding
from .facexlib_faces import facexlib_tensor
from .onnx_models import onnxruntime
from .runtime import AnnotatorModels, default_models

FEATURE = "ip-adapter_pulid"
ANTELOPE_RESOLUTION = 512  # instant_id_face_embedding's default, which the reference's PuLID leaves as is


def pulid_embedding(image: np.ndarray, models: AnnotatorModels | None = None) -> dict[str, torch.Tensor]:
    onnxruntime(FEATURE)  # 501 before any file is looked for
    models = default_models() if models is None else models
    net = models.get(EVA_CLIP)  # the largest file, and the one a FaceID / InstantID setup does not have yet
    rgb = hwc3(image)
    ante = instant_id_face_embedding(rgb, ANTELOPE_RESOLUTION, models).reshape(1, -1)
    face = facexlib_tensor(rgb, models)
    with models.running(net) as device:
        cond_vit, hidden = eva_features(net, face.to(device))
        return {"id_ante_embedding": ante.float(), "id_cond_vit": cond_vit.float().cpu(),
                "id_vit_hidden": torch.stack(hidden).float().cpu()}
