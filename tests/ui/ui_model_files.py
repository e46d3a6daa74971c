"""Small ControlNet files in the real ldm key layout, for the panel's model lists and family filter.

The network is built on the meta device from a hand-written architecture (SD1-like: cross-attention
projections as convs, no class embedding; SDXL-like: linear projections and the `label_emb` of SDXL's size
conditioning) and saved with zero weights: the panel reads names and header shapes, never the values.
Building takes well under a second, unlike a randomly initialised model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from lib_controlnet.models.networks.arch import ControlNetArch, DownSpec, HintConv, ResSpec
from lib_controlnet.models.networks.controlnet import ControlNet

_HINT = (HintConv(3, 16, 3, 1), HintConv(16, 16, 3, 1), HintConv(16, 32, 3, 2), HintConv(32, 32, 3, 1),
         HintConv(32, 96, 3, 2), HintConv(96, 96, 3, 1), HintConv(96, 256, 3, 2), HintConv(256, 32, 3, 1))

ARCHS = {
    "sd1": ControlNetArch(
        in_channels=4, model_channels=32, hint_convs=_HINT,
        input_blocks=(ResSpec(32, 32, 1, 0), ResSpec(32, 32, 1, 0), DownSpec(32, 0), ResSpec(32, 64, 1, 1),
                      ResSpec(64, 64, 1, 1)),
        middle=("res", "attn", "res"), middle_attention_depth=1, context_dim=32, linear_projection=False,
        adm_in_channels=None, num_heads=8),
    "sdxl": ControlNetArch(
        in_channels=4, model_channels=32, hint_convs=_HINT,
        input_blocks=(ResSpec(32, 32, None, 0), ResSpec(32, 32, None, 0), DownSpec(32, 0), ResSpec(32, 64, 1, 1),
                      ResSpec(64, 64, 1, 1)),
        middle=("res", "attn", "res"), middle_attention_depth=1, context_dim=64, linear_projection=True,
        adm_in_channels=48, head_dim=64),
}


def write_controlnet(path: Path, family: str) -> Path:
    """A `.safetensors` ControlNet of `family` ("sd1" or "sdxl") with the `control_model.` prefix."""
    with torch.device("meta"):
        net = ControlNet(ARCHS[family])
    tensors = {f"control_model.{k}": torch.zeros(v.shape, dtype=torch.float16) for k, v in net.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


def write_union(path: Path) -> Path:
    """An SDXL ControlNet Union file (xinsir's task head on the SDXL arch), named without "union"."""
    from lib_controlnet.models.networks.controlnet_union import ControlNetUnion, UnionSpec

    with torch.device("meta"):
        net = ControlNetUnion(ARCHS["sdxl"], UnionSpec(6, 8, 32, 32, heads=8, layers=1))
    tensors = {k: torch.zeros(v.shape, dtype=torch.float16) for k, v in net.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


def write_model_folder(folder: Path) -> dict[str, str]:
    """A model folder with SD1 and SDXL canny models (families only in their shapes, not their names), an SD1
    lineart model, and an SDXL pickle whose family only its name tells. Returns {file name: family}."""
    files = {
        "canny_a.safetensors": "sd1",
        "canny_b.safetensors": "sdxl",
        "control_v11p_lineart.safetensors": "sd1",
    }
    for name, family in files.items():
        write_controlnet(folder / name, family)
    torch.save({"note": torch.zeros(1)}, folder / "t2i_xl_openpose.pth")
    files["t2i_xl_openpose.pth"] = "sdxl"
    return files
