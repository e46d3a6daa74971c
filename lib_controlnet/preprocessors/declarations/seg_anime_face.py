"""seg_anime_face: anime face parts (hair, eyes, mouth, face, skin, clothes) by the U-Net in UNet.pth."""

from ..declaration import Preprocessor, neural

PREPROCESSORS = (
    Preprocessor(name="anime_face_segment", label="seg_anime_face", run=neural("anime_face", "seg_anime_face"),
                 tags=("Segmentation",), weight_file="UNet.pth"),
)
