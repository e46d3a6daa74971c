"""ip-adapter_pulid: PuLID's ID inputs (annotator.neural.pulid): antelopev2's face embedding, the facexlib
face-features image's EVA02-CLIP-L-14-336 embedding and hidden states. Declared as the reference's
PreprocessorPuLID: tag IP-Adapter, Resolution hidden, returns data (no map), control mode shown."""

from ..declaration import NO_RESOLUTION, Preprocessor

FILES = ("scrfd_10g_bnkps.onnx, glintr100.onnx, detection_Resnet50_Final.pth, parsing_bisenet.pth, "
         "EVA02_CLIP_L_336_psz14_s6B.pt")


def _pulid(image, params):
    from annotator.neural.pulid import pulid_embedding

    return pulid_embedding(image)


PREPROCESSORS = (
    Preprocessor(name="ip-adapter_pulid", run=_pulid, tags=("IP-Adapter",), resolution=NO_RESOLUTION,
                 returns_image=False, weight_file=FILES),
)
