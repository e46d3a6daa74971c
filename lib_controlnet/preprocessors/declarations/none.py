from ..declaration import RESOLUTION_UNUSED, Preprocessor

PREPROCESSORS = (
    Preprocessor(name="none", run=lambda image, params: image, tags=("InstructP2P",), priority=10,
                 resolution=RESOLUTION_UNUSED, description="The image itself, for ready-made control maps."),
)
