"""OpenPose family on the CMU networks (body_pose_model.pth, hand_pose_model.pth, facenet.pth), with the
reference's names. `body=False` (openpose_faceonly) still detects bodies to find faces, but draws no body."""

from ..declaration import Detection, Preprocessor


def _variant(name: str, *, body: bool, hands: bool, face: bool, priority: int = 0) -> Preprocessor:
    files = ["body_pose_model.pth"] + (["hand_pose_model.pth"] if hands else []) + (["facenet.pth"] if face else [])

    def run(image, params) -> Detection:
        from annotator.neural.openpose import openpose

        drawn, pose = openpose(image, params.resolution, body=body, hands=hands, face=face)
        return Detection(map=drawn, display=drawn, pose=pose)

    return Preprocessor(name=name, run=run, tags=("OpenPose",), priority=priority, returns_pose=True,
                        weight_file=", ".join(files))


PREPROCESSORS = (
    _variant("openpose", body=True, hands=False, face=False),
    _variant("openpose_hand", body=True, hands=True, face=False),
    _variant("openpose_face", body=True, hands=False, face=True),
    _variant("openpose_faceonly", body=False, hands=False, face=True),
    _variant("openpose_full", body=True, hands=True, face=True, priority=100),
)
