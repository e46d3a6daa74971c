"""FaceID and InstantID: insightface's face embedding and keypoints (annotator.neural.face_analysis), from the
published buffalo_l / antelopev2 ONNX files on onnxruntime (without it these answer 501).

ip-adapter_face_id and ip-adapter_face_id_plus return embeddings for the FaceID IP-Adapters (no control mode,
the Resolution listed but unused, as the reference); instant_id_face_embedding returns the face embedding the
InstantID IP-Adapter projects, instant_id_face_keypoints the keypoint map the InstantID ControlNet reads.
Both InstantID modules run on the image scaled to the Resolution."""

from ..declaration import RESOLUTION, RESOLUTION_UNUSED, Detection, Preprocessor

BUFFALO_L = "det_10g.onnx, w600k_r50.onnx"
ANTELOPEV2 = "scrfd_10g_bnkps.onnx, glintr100.onnx"


def _face_id(image, params):
    from annotator.neural.face_analysis import face_id_embedding

    return face_id_embedding(image)


def _face_id_plus(image, params):
    from annotator.neural.face_analysis import face_id_plus_embedding

    return face_id_plus_embedding(image)


def _instant_id_embedding(image, params):
    from annotator.neural.face_analysis import instant_id_face_embedding

    return instant_id_face_embedding(image, params.resolution)


def _instant_id_keypoints(image, params) -> Detection:
    from annotator.neural.face_analysis import instant_id_face_keypoints

    drawn = instant_id_face_keypoints(image, params.resolution)
    return Detection(map=drawn, display=drawn)


PREPROCESSORS = (
    Preprocessor(name="ip-adapter_face_id", run=_face_id, tags=("IP-Adapter",), resolution=RESOLUTION_UNUSED,
                 returns_image=False, show_control_mode=False, weight_file=BUFFALO_L),
    Preprocessor(name="ip-adapter_face_id_plus", run=_face_id_plus, tags=("IP-Adapter",),
                 resolution=RESOLUTION_UNUSED, returns_image=False, show_control_mode=False,
                 weight_file=f"{BUFFALO_L}, clip_h.pth"),
    Preprocessor(name="instant_id_face_embedding", run=_instant_id_embedding, tags=("Instant-ID",),
                 resolution=RESOLUTION, returns_image=False, weight_file=ANTELOPEV2),
    Preprocessor(name="instant_id_face_keypoints", run=_instant_id_keypoints, tags=("Instant-ID",),
                 resolution=RESOLUTION, weight_file="scrfd_10g_bnkps.onnx"),
)
