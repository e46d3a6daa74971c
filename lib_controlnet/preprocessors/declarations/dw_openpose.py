"""dw_openpose_full and animal_openpose: YOLOX-L boxes, then DWPose whole-body / RTMPose AP-10K keypoints, on
onnxruntime (the published .onnx files; without onnxruntime these answer 501)."""

from ..declaration import Detection, Preprocessor


def _run(function: str):
    def run(image, params) -> Detection:
        from annotator.neural import dwpose

        drawn, pose = getattr(dwpose, function)(image, params.resolution)
        return Detection(map=drawn, display=drawn, pose=pose)

    return run


PREPROCESSORS = (
    Preprocessor(name="dw_openpose_full", run=_run("dw_openpose_full"), tags=("OpenPose",), returns_pose=True,
                 weight_file="yolox_l.onnx, dw-ll_ucoco_384.onnx"),
    Preprocessor(name="animal_openpose", run=_run("animal_openpose"), tags=("OpenPose",), returns_pose=True,
                 weight_file="yolox_l.onnx, rtmpose-m_simcc-ap10k_pt-aic-coco_210e-256x256-7a041aa1_20230206.onnx"),
)
