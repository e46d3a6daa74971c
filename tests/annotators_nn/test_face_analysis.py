"""FaceID / InstantID face analysis on onnxruntime, with ONNX stand-ins of insightface's published files
(tests/face_models.py): faces are designed in the detector's outputs, so boxes, keypoints, the aligned crop and
the embedding below are worked out by hand from insightface 0.7.3's formulas (the 640 letterbox, SCRFD's
distance decoding, score >= 0.5, NMS at 0.4, the largest face, the ArcFace template, (x - 127.5) / 127.5), not
by calling our code. The similarity fit is also compared with scikit-image's (insightface's own dependency)."""

import sys

import cv2
import numpy as np
import pytest
import torch
from nn_test_helpers import PreloadedModels
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from annotator.neural import face_analysis as fa
from annotator.neural import onnx_models
from annotator.neural.clip_vision import clip_embedding
from annotator.neural.runtime import AnnotatorModels
from annotator.neural.weights import set_weights_folder
from lib_controlnet.errors import InputError, MissingDependencyError, ModelFileError, NotFoundError
from lib_controlnet.preprocessors import ResultCache, default_registry, run_preprocessor
from tests.face_models import ArcFaceWeights, Face, arcface, designed_scrfd_outputs, scrfd

pytest.importorskip("onnxruntime")

T = fa.ARCFACE_TEMPLATE
# The photo fixture is 256 x 320 (h x w): letterboxed to 640 wide, 512 high, scale 2 (network px = 2 x image px).
# Face A: the largest kept box; its keypoints are 4 x the template + (80, 32) in network pixels, i.e. 2 x the
# template + (40, 16) in the photo, so the aligned crop is photo[16 + 2v, 40 + 2u] exactly.
FACE_A = Face((256, 112, 384, 288), 0.9, 4 * T + (80, 32), stride=32, cell=(10, 6), anchor=1)
# Face B: a smaller box scoring higher (kept, but not the largest), at stride 8.
FACE_B = Face((464, 464, 512, 504), 0.95, 0.5 * T + (460, 460), stride=8, cell=(60, 60))
# Face C: a larger box over A scoring lower: IoU (128+1)(176+1) / (144+1)(192+1) = 0.82 > 0.4, removed by NMS.
FACE_C = Face((248, 104, 392, 296), 0.8, 4 * T + (80, 32), stride=16, cell=(20, 12))
# Face D: the largest of all but scoring 0.45 < 0.5.
FACE_D = Face((0, 0, 600, 600), 0.45, 4 * T, stride=32, cell=(5, 5))
FACES = [FACE_A, FACE_B, FACE_C, FACE_D]


def _load(spec, data: bytes, folder):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / spec.weight.name
    path.write_bytes(data)
    return spec.load(path)


@pytest.fixture(scope="module")
def weights():
    return ArcFaceWeights.random(seed=5)


@pytest.fixture(scope="module")
def nets(tmp_path_factory, weights):
    folder = tmp_path_factory.mktemp("insightface")
    det = scrfd(designed_scrfd_outputs(FACES))
    return {"buffalo_det": _load(fa.BUFFALO_DETECTOR, det, folder),
            "buffalo_rec": _load(fa.BUFFALO_RECOGNISER, arcface(weights), folder),
            "antelope_det": _load(fa.ANTELOPE_DETECTOR, det, folder),
            "antelope_rec": _load(fa.ANTELOPE_RECOGNISER, arcface(weights), folder)}


@pytest.fixture(scope="module")
def models(nets):
    return PreloadedModels({"det_10g.onnx": nets["buffalo_det"], "w600k_r50.onnx": nets["buffalo_rec"],
                            "scrfd_10g_bnkps.onnx": nets["antelope_det"], "glintr100.onnx": nets["antelope_rec"]})


def _normalised(crop: np.ndarray, mean=127.5, std=127.5) -> np.ndarray:
    return ((crop.astype(np.float64) - mean) / std).transpose(2, 0, 1)[None]


# --- formulas ------------------------------------------------------------------------------------------------
def test_detector_input_is_the_letterbox_scaled_to_fit_on_black():
    image = np.full((100, 50, 3), 255, np.uint8)  # taller than wide: 640 high, int(640 / 2) = 320 wide
    blob, scale = fa.detector_input(image)
    assert blob.shape == (1, 3, 640, 640) and scale == 6.4
    assert np.allclose(blob[0, :, :, :320], (255 - 127.5) / 128) and np.allclose(blob[0, :, :, 320:], -127.5 / 128)
    rgb = np.zeros((64, 80, 3), np.uint8)
    rgb[..., 0] = 200  # red stays the first channel (the reference converts to BGR and blobFromImage swaps back)
    blob, scale = fa.detector_input(rgb)
    assert scale == 8.0 and np.allclose(blob[0, 0, :512], (200 - 127.5) / 128) and np.allclose(blob[0, 1, :512],
                                                                                                -127.5 / 128)


def test_a_strip_of_an_image_keeps_a_pixel_of_height():
    blob, scale = fa.detector_input(np.full((1, 2000, 3), 255, np.uint8))
    assert scale == 1.0 and np.allclose(blob[0, :, 0, :640], (255 - 127.5) / 128)
    assert np.allclose(blob[0, :, 1:], -127.5 / 128)


def test_anchor_centres_go_row_by_row_with_each_cells_anchors_together():
    centres = fa.anchor_centres(2, 3, 8, 2)
    expected = [(0, 0), (0, 0), (8, 0), (8, 0), (16, 0), (16, 0), (0, 8), (0, 8), (8, 8), (8, 8), (16, 8), (16, 8)]
    assert centres.tolist() == [list(c) for c in expected]


def test_boxes_and_keypoints_come_back_in_image_pixels(photo, nets):
    dets, points = fa.detect_faces(nets["buffalo_det"], photo)
    # B (0.95) then A (0.9): C is under A (NMS), D under 0.5; everything divided by the letterbox scale 2
    assert np.allclose(dets[:, 4], [0.95, 0.9], atol=1e-4)
    assert np.allclose(dets[:, :4], [[232, 232, 256, 252], [128, 56, 192, 144]], atol=1e-3)
    assert np.allclose(points[1], 2 * T + (40, 16), atol=1e-3)
    assert np.allclose(points[0], 0.25 * T + (230, 230), atol=1e-3)
    assert fa.largest_face(dets) == 1


def test_largest_face_ties_go_to_the_later_box_and_none_is_a_422():
    dets = np.array([[0, 0, 10, 10, 0.9], [50, 50, 60, 60, 0.8], [0, 0, 5, 5, 0.7]], np.float32)
    assert fa.largest_face(dets) == 1
    with pytest.raises(InputError) as info:
        fa.largest_face(np.zeros((0, 5), np.float32))
    assert info.value.status_code == 422 and info.value.field == "image" and "no face" in str(info.value)


def _rotation(theta):
    return np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])


@pytest.mark.parametrize("theta, k, t", [(0.0, 2.0, (40, 16)), (0.3, 1.5, (10, -4)), (-1.2, 0.7, (3.5, 90))])
def test_alignment_is_the_inverse_similarity_worked_by_hand(theta, k, t):
    """Keypoints that are the template rotated by theta, scaled by k and moved by t: the fit is exactly the
    inverse, x -> R(-theta) (x - t) / k."""
    keypoints = (k * T @ _rotation(theta).T) + t
    matrix = fa.alignment_matrix(keypoints)
    inverse = _rotation(-theta) / k
    assert np.allclose(matrix[:, :2], inverse, atol=1e-9)
    assert np.allclose(matrix[:, 2], -inverse @ np.array(t, float), atol=1e-7)
    assert np.allclose(keypoints @ matrix[:, :2].T + matrix[:, 2], T, atol=1e-7)


def test_similarity_fit_equals_scikit_images_on_noisy_points():
    transform = pytest.importorskip("skimage.transform")
    rng = np.random.default_rng(1)
    for _ in range(5):
        keypoints = T @ _rotation(rng.uniform(-1, 1)).T * rng.uniform(0.5, 3) + rng.uniform(-50, 50, 2)
        keypoints += rng.normal(0, 2, keypoints.shape)
        reference = transform.SimilarityTransform()
        reference.estimate(keypoints, T)
        assert np.allclose(fa.alignment_matrix(keypoints), reference.params[:2], atol=1e-9)
    mirrored = T * [-1, 1]  # a reflection is not a similarity: the fit stays a rotation
    assert np.linalg.det(fa.similarity_transform(mirrored, T)[:, :2]) > 0


def test_alignment_for_other_template_sizes_follows_estimate_norm():
    m224 = fa.alignment_matrix(2 * T, 224)  # 112k: the template scaled by k
    assert np.allclose(m224[:, :2], np.eye(2)) and np.allclose(m224[:, 2], 0, atol=1e-9)
    m128 = fa.alignment_matrix(T, 128)  # 128k: scaled by k and 8k to the right
    assert np.allclose(m128[:, :2], np.eye(2)) and np.allclose(m128[:, 2], (8, 0))


def test_norm_crop_of_a_scaled_face_picks_every_other_pixel(photo):
    crop = fa.norm_crop(photo, 2 * T + (40, 16))
    assert crop.shape == (112, 112, 3)
    assert np.abs(crop.astype(int) - photo[16:240:2, 40:264:2]).max() <= 1


def test_recogniser_normalisation_follows_the_first_node_names(tmp_path, weights):
    pytorch = _load(fa.BUFFALO_RECOGNISER, arcface(weights), tmp_path / "pt")
    mxnet = _load(fa.BUFFALO_RECOGNISER, arcface(weights, mxnet=True), tmp_path / "mx")
    assert (pytorch.mean, pytorch.std) == (127.5, 127.5) and (mxnet.mean, mxnet.std) == (0.0, 1.0)
    assert onnx_models.first_node_names(arcface(weights, mxnet=True), 3) == ["_minus0", "_mul0", "n5"]
    assert fa.arcface_normalisation(["Conv_0", "Sub_1"]) == (127.5, 127.5)  # both are needed
    crop = np.random.default_rng(2).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    assert np.allclose(pytorch(fa.recogniser_input(crop, pytorch))[0], weights(_normalised(crop))[0], atol=1e-4)
    assert np.allclose(mxnet(fa.recogniser_input(crop, mxnet))[0], weights(_normalised(crop, 0, 1))[0], atol=1e-2)


# --- the modules ---------------------------------------------------------------------------------------------
def test_face_id_is_the_normed_embedding_of_the_largest_faces_crop(photo, models, weights):
    found = fa.face_id_embedding(photo, models)
    raw = weights(_normalised(photo[16:240:2, 40:264:2]))[0]
    assert found.shape == (1, 512) and found.dtype == torch.float32
    assert np.allclose(found[0].numpy(), raw / np.linalg.norm(raw), atol=1e-5)
    assert abs(float(found.norm()) - 1) < 1e-5


def test_instant_id_embedding_is_raw_and_on_the_image_at_processing_resolution(photo, models, weights):
    # At 512 the photo is 512 x 640 (cubic), a multiple of 64, letterboxed at scale 1: keypoints in the image
    # are the network's, 4 x the template + (80, 32), so the crop is every fourth pixel from (80, 32).
    big = cv2.resize(photo, (640, 512), interpolation=cv2.INTER_CUBIC)
    found = fa.instant_id_face_embedding(photo, 512, models)
    assert found.shape == (512,)
    assert np.allclose(found.numpy(), weights(_normalised(big[32:480:4, 80:528:4]))[0], atol=1e-4)


def test_instant_id_keypoints_drawn_at_processing_resolution(photo, models):
    drawn = fa.instant_id_face_keypoints(photo, 512, models)
    assert drawn.shape == (512, 640, 3) and drawn.dtype == np.uint8
    points = 4 * T + (80, 32)
    for (x, y), colour in zip(points, fa.KPS_COLOURS):
        assert tuple(drawn[int(y), int(x)]) == colour  # the discs, full colour
        assert tuple(drawn[int(y), int(x) + 9]) == colour and tuple(drawn[int(y), int(x) + 12]) != colour
    for a in (0, 1, 3, 4):  # each stick, halfway to the nose, in 60 % of its first point's colour
        mx, my = (points[a] + points[2]) / 2
        assert tuple(drawn[int(my), int(mx)]) == tuple(int(c * 0.6) for c in fa.KPS_COLOURS[a])
    assert drawn[:20, :20].max() == 0 and drawn[-20:, -20:].max() == 0


def test_instant_id_keypoints_crop_the_padding(photo, models):
    # At 200 the photo is 200 x 250, padded to 256 x 256, letterboxed at scale 2.5: keypoints are net / 2.5.
    drawn = fa.instant_id_face_keypoints(photo, 200, models)
    assert drawn.shape == (200, 250, 3)
    x, y = (4 * T[2] + (80, 32)) / 2.5
    assert tuple(drawn[int(y), int(x)]) == fa.KPS_COLOURS[2]


def test_face_id_plus_adds_clip_h_embeddings_of_the_same_image(photo, models):
    torch.manual_seed(0)
    clip = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=16, patch_size=14,
        image_size=224, projection_dim=24, layer_norm_eps=1e-5)).eval()
    models.nets["clip_h.pth"] = clip
    try:
        found = fa.face_id_plus_embedding(photo, models)
        expected = clip_embedding(photo, "clip_h", models)
    finally:
        del models.nets["clip_h.pth"]
    assert torch.equal(found["face_embed"], fa.face_id_embedding(photo, models))
    assert set(found) == {"face_embed", *expected}
    assert all(torch.equal(found[k], expected[k]) for k in expected)


def test_no_face_is_a_422_naming_the_image(tmp_path, weights):
    det = _load(fa.BUFFALO_DETECTOR, scrfd(designed_scrfd_outputs([FACE_D])), tmp_path)
    rec = _load(fa.BUFFALO_RECOGNISER, arcface(weights), tmp_path)
    models = PreloadedModels({"det_10g.onnx": det, "w600k_r50.onnx": rec})
    with pytest.raises(InputError) as info:
        fa.face_id_embedding(np.zeros((64, 64, 3), np.uint8), models)
    assert "unit" not in str(info.value) and "field 'image'" in str(info.value)


# --- other published layouts ---------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["batched", "fixed size", "five strides"])
def test_other_scrfd_layouts_decode_the_same_faces(photo, tmp_path, layout):
    if layout == "five strides":  # 15 outputs, one anchor per cell: A at stride 32 anchor 0, B at stride 128
        faces = [Face(FACE_A.box, 0.9, FACE_A.keypoints, 32, (10, 6)),
                 Face(FACE_B.box, 0.95, FACE_B.keypoints, 128, (4, 4))]
        data = scrfd(designed_scrfd_outputs(faces, outputs=15))
    else:
        data = scrfd(designed_scrfd_outputs([FACE_A, FACE_B]), batched=layout == "batched",
                     free_size=layout != "fixed size")
    net = _load(fa.BUFFALO_DETECTOR, data, tmp_path)
    dets, points = fa.detect_faces(net, photo)
    assert np.allclose(dets[:, :4], [[232, 232, 256, 252], [128, 56, 192, 144]], atol=1e-3)
    assert np.allclose(points[1], 2 * T + (40, 16), atol=1e-3)


def test_a_fixed_input_size_is_the_letterbox_size(tmp_path):
    data = scrfd(designed_scrfd_outputs([Face((96, 32, 160, 120), 0.9, 2 * T, 32, (4, 2))], side=320),
                 free_size=False, side=320)
    net = _load(fa.BUFFALO_DETECTOR, data, tmp_path)
    assert net.input_size == (320, 320)
    dets, _ = fa.detect_faces(net, np.zeros((160, 320, 3), np.uint8))  # scale 1 into the 320 x 320 input
    assert np.allclose(dets[0, :4], (96, 32, 160, 120), atol=1e-3)


def test_the_onnx_graphs_compute_what_they_encode(tmp_path, weights):
    """The hand-written protobufs are parsed by onnxruntime into the graphs we meant (image term large)."""
    designed = designed_scrfd_outputs([FACE_A])
    net = _load(fa.BUFFALO_DETECTOR, scrfd(designed, seed=3, scale=1.0), tmp_path)
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 640, 640)).astype(np.float32)
    out = net(x)
    rng = np.random.default_rng(3)
    term = float(np.einsum("c,chw->", rng.normal(0, 1, (1, 3, 1, 1)).reshape(3), x[0]) / 640**2)
    for got, want in zip(out, designed):
        assert got.shape == want.shape
        assert np.allclose(got, want + term * rng.normal(0, 1, want.shape), atol=1e-4)
    rec = _load(fa.BUFFALO_RECOGNISER, arcface(weights), tmp_path)
    blob = np.random.default_rng(1).normal(0, 1, (1, 3, 112, 112)).astype(np.float32)
    assert np.allclose(rec(blob)[0], weights(blob), atol=1e-4)


def test_signature_checks_and_the_missing_file_and_package_errors(tmp_path, weights, monkeypatch):
    (tmp_path / "det_10g.onnx").write_bytes(arcface(weights))
    with pytest.raises(ModelFileError, match=r"det_10g.onnx does not hold the SCRFD face detector \(buffalo_l\)"):
        AnnotatorModels(device="cpu", folder=tmp_path).get(fa.BUFFALO_DETECTOR)
    (tmp_path / "glintr100.onnx").write_bytes(scrfd(designed_scrfd_outputs([FACE_A])))
    with pytest.raises(ModelFileError, match=r"glintr100.onnx does not hold the ArcFace"):
        AnnotatorModels(device="cpu", folder=tmp_path).get(fa.ANTELOPE_RECOGNISER)
    (tmp_path / "w600k_r50.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ModelFileError, match="not a readable ONNX model"):
        AnnotatorModels(device="cpu", folder=tmp_path).get(fa.BUFFALO_RECOGNISER)
    # found in the reference's sub-folder (annotator/downloads/insightface/models/<pack>)
    pack = tmp_path / "tree" / "insightface" / "models" / "antelopev2"
    pack.mkdir(parents=True)
    (pack / "glintr100.onnx").write_bytes(arcface(weights))
    assert AnnotatorModels(device="cpu", folder=tmp_path / "tree").get(fa.ANTELOPE_RECOGNISER).std == 127.5

    empty = tmp_path / "empty"
    for spec, source in ((fa.BUFFALO_DETECTOR, "releases/download/v0.7/buffalo_l.zip"),
                         (fa.ANTELOPE_DETECTOR, "DIAMONIK7777/antelopev2/blob/main/scrfd_10g_bnkps.onnx")):
        with pytest.raises(NotFoundError) as info:
            AnnotatorModels(device="cpu", folder=empty).get(spec)
        message = str(info.value)
        assert info.value.status_code == 404 and spec.weight.name in message and str(empty) in message
        assert source in message and spec.weight.subfolder in message

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # "import onnxruntime" now fails
    for run in (lambda: fa.face_id_embedding(np.zeros((64, 64, 3), np.uint8)),
                lambda: fa.instant_id_face_keypoints(np.zeros((64, 64, 3), np.uint8), 64)):
        with pytest.raises(MissingDependencyError) as info:
            run()
        assert info.value.status_code == 501 and f"pip install {onnx_models.ONNXRUNTIME}" in str(info.value)


def test_the_registered_modules_read_the_annotator_folder(photo, tmp_path, weights):
    det = scrfd(designed_scrfd_outputs(FACES))
    for name, data in (("det_10g.onnx", det), ("w600k_r50.onnx", arcface(weights)),
                       ("scrfd_10g_bnkps.onnx", det), ("glintr100.onnx", arcface(weights))):
        (tmp_path / name).write_bytes(data)
    set_weights_folder(tmp_path)
    try:
        registry, cache = default_registry(), ResultCache()
        face = run_preprocessor(registry.get("ip-adapter_face_id"), photo, cache=cache).map
        embed = run_preprocessor(registry.get("instant_id_face_embedding"), photo, cache=cache).map
        keypoints = run_preprocessor(registry.get("instant_id_face_keypoints"), photo, cache=cache)
    finally:
        set_weights_folder()
    assert face.shape == (1, 512) and abs(float(face.norm()) - 1) < 1e-5
    assert embed.shape == (512,)
    assert keypoints.map.shape == (512, 640, 3) and keypoints.map.any()  # the default Resolution 512
