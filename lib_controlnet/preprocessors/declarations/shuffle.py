from annotator.shuffle import shuffle

from ..declaration import Preprocessor, Slider

PREPROCESSORS = (
    # Resolution is fixed at 512 (hidden), as the shuffle models were trained.
    Preprocessor(name="shuffle", run=lambda image, p: shuffle(image, p.resolution, p.seed), tags=("Shuffle",),
                 resolution=Slider("Resolution", 512, 64, 2048, step=8, visible=False), uses_seed=True),
)
