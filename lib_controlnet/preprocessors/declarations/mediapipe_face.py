from annotator.mediapipe_face import mediapipe_face

from ..declaration import Preprocessor, Slider

PREPROCESSORS = (
    Preprocessor(name="mediapipe_face", run=lambda image, p: mediapipe_face(image, p.resolution, p.slider_1,
                                                                              p.slider_2),
                 slider_1=Slider("Max Faces", 1, 1, 10, step=1),
                 slider_2=Slider("Min Face Confidence", 0.5, 0.01, 1.0)),
)
