"""Preprocessor implementations: pure functions from an HWC uint8 RGB image (plus parameters) to a control map.

Nothing here knows about the WebUI, the registry or HTTP; `lib_controlnet.preprocessors` declares which
function serves which module name. Nothing here downloads anything: the weight-free maps are OpenCV/NumPy,
and the mediapipe ones use the models shipped inside the mediapipe wheel.
"""
