"""The neural lineart family (lineart_standard, weight-free, has its own file)."""

from ..declaration import Preprocessor


def _lineart(coarse: bool):
    def run(image, p):
        from annotator.neural.lineart import lineart

        return lineart(image, p.resolution, coarse=coarse)

    return run


def _anime(image, p):
    from annotator.neural.lineart import lineart_anime

    return lineart_anime(image, p.resolution)


def _anime_denoise(image, p):
    from annotator.neural.lineart import lineart_anime_denoise

    return lineart_anime_denoise(image, p.resolution)


PREPROCESSORS = (
    Preprocessor(name="lineart", label="lineart_realistic", run=_lineart(False), tags=("Lineart",),
                 weight_file="sk_model.pth"),
    Preprocessor(name="lineart_coarse", run=_lineart(True), tags=("Lineart",), weight_file="sk_model2.pth"),
    Preprocessor(name="lineart_anime", run=_anime, tags=("Lineart",), weight_file="netG.pth"),
    Preprocessor(name="lineart_anime_denoise", run=_anime_denoise, tags=("Lineart",), weight_file="erika.pth"),
)
