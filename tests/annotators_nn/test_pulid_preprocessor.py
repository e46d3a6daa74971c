"""ip-adapter_pulid (annotator/neural/pulid.py): the reference's PuLIDProjInput from a photograph, with every file
read from an annotator folder: antelopev2's ONNX stand-ins (tests/face_models.py: one designed face), a RetinaFace
whose heads are designed (a face at every stride-32 prior, landmarks on facexlib's template), a random BiSeNet
and a tiny random EVA-CLIP tower in the published file's structure (tests/pulid_models.py).

Each part is the module it comes from: the antelopev2 embedding is instant_id_face_embedding's at 512, the
EVA-CLIP input is facexlib's face-features image unrounded, and id_cond_vit / id_vit_hidden are the tower's on it
(the tower itself is checked against upstream in test_eva_clip.py). A unit's image reaches it as RGB (no CLIP
mask); it answers 501 without onnxruntime and 404 naming a missing file (no face: facexlib's and
insightface's 422, test_facexlib.py / test_face_analysis.py).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from annotator.neural import eva_clip as ev
from annotator.neural import face_analysis as fa
from annotator.neural import facexlib_faces as fx
from annotator.neural import onnx_models
from annotator.neural.pulid import pulid_embedding
from annotator.neural.runtime import AnnotatorModels, default_models
from annotator.neural.weights import set_weights_folder
from lib_controlnet.errors import MissingDependencyError, NotFoundError
from lib_controlnet.preprocessors import ResultCache, default_registry, run_preprocessor
from lib_controlnet.units.image_input import control_input
from lib_controlnet.units.unit import uses_clip
from tests.face_models import ArcFaceWeights, Face, arcface, designed_scrfd_outputs, scrfd
from tests.pulid_models import designed_retinaface_state, eva_clip_file_state, random_bisenet_state

pytest.importorskip("onnxruntime")

T = fa.ARCFACE_TEMPLATE
FACE = Face((256, 112, 384, 288), 0.9, 4 * T + (80, 32), stride=32, cell=(10, 6), anchor=1)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("pulid-annotators")
    pack = root / "insightface" / "models" / "antelopev2"
    pack.mkdir(parents=True)
    (pack / "scrfd_10g_bnkps.onnx").write_bytes(scrfd(designed_scrfd_outputs([FACE])))
    (pack / "glintr100.onnx").write_bytes(arcface(ArcFaceWeights.random(seed=7)))
    (root / "facexlib").mkdir()
    torch.save(designed_retinaface_state(), root / "facexlib" / "detection_Resnet50_Final.pth")
    torch.save(random_bisenet_state(seed=8), root / "facexlib" / "parsing_bisenet.pth")
    (root / "clip_vision").mkdir()
    torch.save(eva_clip_file_state(seed=9), root / "clip_vision" / ev.EVA_CLIP_FILE)
    return root


@pytest.fixture(scope="module")
def models(folder):
    return AnnotatorModels(device="cpu", folder=folder)


def test_the_registered_module_gives_the_references_fields_from_each_part(photo, folder, models, monkeypatch):
    from annotator.neural import pulid

    seen = {}

    def spy(image, models=None):
        seen["face"] = fx.facexlib_tensor(image, models)
        return seen["face"]

    monkeypatch.setattr(pulid, "facexlib_tensor", spy)
    module = default_registry().get("ip-adapter_pulid")
    assert (module.label, module.tags, module.returns_image, module.resolution.visible) == (
        "ip-adapter_pulid", ("IP-Adapter",), False, False)
    set_weights_folder(folder)
    try:
        out = run_preprocessor(module, photo, cache=ResultCache()).map
        loads = default_models().loads
        again = run_preprocessor(module, photo, cache=ResultCache()).map  # no result cache: runs again
    finally:
        set_weights_folder()
    assert default_models().loads == loads  # its five networks stay loaded together
    assert all(torch.equal(out[k], again[k]) for k in out)
    assert set(out) == {"id_ante_embedding", "id_cond_vit", "id_vit_hidden"}
    assert all(v.dtype == torch.float32 for v in out.values())
    assert torch.equal(out["id_ante_embedding"], fa.instant_id_face_embedding(photo, 512, models).reshape(1, 512))
    face = seen["face"]  # facexlib's face-features image, unrounded
    assert face.shape == (1, 3, 512, 512) and float(face.min()) >= 0 and float(face.max()) <= 1
    assert (face == 1).any() and (face < 1).any()  # parsed: white classes and a grey face
    assert torch.equal(face[:, 0], face[:, 1]) and torch.equal(face[:, 1], face[:, 2])
    tower = models.get(ev.EVA_CLIP)
    with torch.no_grad():
        embeds, hidden = tower(ev.eva_input(face, 42))
    assert torch.allclose(out["id_cond_vit"], embeds / embeds.norm(dim=1, keepdim=True), atol=1e-6)
    assert abs(float(out["id_cond_vit"].norm()) - 1) < 1e-5
    assert out["id_vit_hidden"].shape == (5, 1, 10, 64)
    assert torch.allclose(out["id_vit_hidden"], torch.stack(hidden), atol=1e-6)


def test_a_unit_image_reaches_it_as_rgb():
    """It reads faces and takes no CLIP mask (unlike the CLIP encoders, which keep the alpha): a unit's image
    with a transparent (empty) mask reaches it as its RGB, not composited over white."""
    photo = np.random.default_rng(3).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    rgba = np.dstack([photo, np.zeros((32, 32), np.uint8)])
    assert not uses_clip("ip-adapter_pulid") and uses_clip("ip-adapter_clip_sd15")
    assert np.array_equal(control_input(rgba, keep_rgba=uses_clip("ip-adapter_pulid")), photo)


def test_a_missing_file_is_a_404_and_no_onnxruntime_a_501(photo, folder, models, tmp_path, monkeypatch):
    for part in ("insightface", "facexlib"):
        (tmp_path / part).symlink_to(folder / part)
    with pytest.raises(NotFoundError) as info:
        pulid_embedding(photo, AnnotatorModels(device="cpu", folder=tmp_path))
    message = str(info.value)
    assert info.value.status_code == 404 and ev.EVA_CLIP_FILE in message and str(tmp_path) in message
    assert "huggingface.co/QuanSun/EVA-CLIP" in message and "'clip_vision' sub-folder" in message
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError) as info:
        pulid_embedding(photo, models)
    assert info.value.status_code == 501 and f"pip install {onnx_models.ONNXRUNTIME}" in str(info.value)
