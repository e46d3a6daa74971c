"""facexlib: PuLID's face-features image (RetinaFace + alignment + BiSeNet parsing), as its own module."""

from ..declaration import NO_RESOLUTION, Preprocessor, neural

PREPROCESSORS = (
    Preprocessor(name="facexlib", run=neural("facexlib_faces", "facexlib"), resolution=NO_RESOLUTION,
                 weight_file="detection_Resnet50_Final.pth, parsing_bisenet.pth"),
)
