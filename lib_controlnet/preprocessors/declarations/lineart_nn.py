"""The neural lineart family (lineart_standard, weight-free, has its own file)."""

from ..declaration import Preprocessor, neural

PREPROCESSORS = (
    Preprocessor(name="lineart", label="lineart_realistic", run=neural("lineart", "lineart", coarse=False),
                 tags=("Lineart",), weight_file="sk_model.pth"),
    Preprocessor(name="lineart_coarse", run=neural("lineart", "lineart", coarse=True), tags=("Lineart",),
                 weight_file="sk_model2.pth"),
    Preprocessor(name="lineart_anime", run=neural("lineart", "lineart_anime"), tags=("Lineart",),
                 weight_file="netG.pth"),
    Preprocessor(name="lineart_anime_denoise", run=neural("lineart", "lineart_anime_denoise"), tags=("Lineart",),
                 weight_file="erika.pth"),
)
