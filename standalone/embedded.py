"""The standalone host's embedded default: a toy SD1.x checkpoint and its canny ControlNet, both trained in this
repository (`python -m lib_controlnet.train.toy`) and shipped in `standalone/embedded/`.

The checkpoint has SD1.x's full key layout at reduced widths; it was trained on nothing but synthetic 64x64
scenes of flat coloured squares, circles and triangles on plain backgrounds with captions such as "a red circle
on the left and a blue square at the top right, on a white background". Its ControlNet was trained on their
canny maps. So the pair shows what ControlNet does - the shapes follow the control map's edges, the background
the prompt (the shapes' own colours mostly do not) - and nothing more: it is not Stable Diffusion, it knows no
other words or subjects, and at other sizes than 64x64 its pictures fall apart.

Both files carry the demo marker (`standalone_demo` metadata, `"weights": "toy-shapes"`), so every result says
what made it. The random-weight SD1.x demo (`demo.py`) stays available with `--demo sd15`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .demo import DEMO_METADATA_KEY, DEMO_NOTICE

EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded"
CHECKPOINT_NAME = "toy-shapes-sd15.safetensors"
CONTROLNET_NAME = "control_toy-shapes_sd15_canny.safetensors"
TOY_WEIGHTS = "toy-shapes"
TOY_NOTICE = (
    "Made with the embedded TOY model, trained in this repository on 64x64 pictures of flat coloured squares, "
    "circles and triangles (with a canny ControlNet): it shows what ControlNet does, but it is not Stable "
    "Diffusion and draws nothing else. Put an SD1.x checkpoint in models/Stable-diffusion (or pass --ckpt) for "
    "real images."
)
TOY_INFOTEXT = "toy model trained on flat coloured shapes - not a Stable Diffusion result"
RANDOM_INFOTEXT = "random weights - the image is noise, not a Stable Diffusion result"


@dataclass(frozen=True)
class EmbeddedModels:
    checkpoint: Path
    controlnet: Path

    def exist(self) -> bool:
        return self.checkpoint.is_file() and self.controlnet.is_file()


def embedded_paths(root: Path = EMBEDDED_DIR) -> EmbeddedModels:
    """Laid out like a models folder: Stable-diffusion/ and ControlNet/ (the latter is listed while it runs)."""
    return EmbeddedModels(root / "Stable-diffusion" / CHECKPOINT_NAME, root / "ControlNet" / CONTROLNET_NAME)


@dataclass(frozen=True)
class DemoLabel:
    """What a demo checkpoint's marker says about it: the notice, the infotext entry, its native size."""

    notice: str
    infotext: str
    native_size: int | None = None


def demo_label(metadata: dict[str, str]) -> DemoLabel | None:
    """None for a real checkpoint; else how results must describe the demo model that made them."""
    marker = metadata.get(DEMO_METADATA_KEY)
    if marker is None:
        return None
    try:
        info = json.loads(marker)
    except ValueError:
        info = {}
    if isinstance(info, dict) and info.get("weights") == TOY_WEIGHTS:
        size = info.get("resolution")
        return DemoLabel(TOY_NOTICE, TOY_INFOTEXT, int(size) if isinstance(size, int) else None)
    return DemoLabel(DEMO_NOTICE, RANDOM_INFOTEXT)
