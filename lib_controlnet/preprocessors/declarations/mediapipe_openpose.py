# New (not in the reference's list): OpenPose maps from mediapipe, whose wheel ships its models, so the
# openpose ControlNets work without downloading the OpenPose weights. One module per reference variant.
from annotator.mediapipe_openpose import mediapipe_openpose

from ..declaration import Detection, Preprocessor


def _variant(name: str, *, body: bool, hands: bool, face: bool) -> Preprocessor:
    def run(image, params) -> Detection:
        drawn, pose = mediapipe_openpose(image, params.resolution, body=body, hands=hands, face=face)
        return Detection(map=drawn, display=drawn, pose=pose)

    return Preprocessor(name=name, run=run, tags=("OpenPose",), returns_pose=True)


PREPROCESSORS = (
    _variant("mediapipe_openpose", body=True, hands=False, face=False),
    _variant("mediapipe_openpose_hand", body=True, hands=True, face=False),
    _variant("mediapipe_openpose_face", body=True, hands=False, face=True),
    _variant("mediapipe_openpose_faceonly", body=False, hands=False, face=True),
    _variant("mediapipe_openpose_full", body=True, hands=True, face=True),
)
