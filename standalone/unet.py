"""The UNet: ldm's `UNetModel` (stable-diffusion-sdkit's copy) for SD1.x/2.x, configured from the checkpoint's
shapes; SDXL's is `sgm_unet`.

For a real SD1.x checkpoint the shapes give exactly `v1-inference.yaml`'s settings (`V1_INFERENCE`), for SD2.x
`v2-inference(-v).yaml`'s; the demo models have the same layouts at reduced widths. What shapes cannot tell,
the file family fixes: SD1.x attention uses 8 heads (`num_heads: 8`), SD2.x 64-wide heads
(`num_head_channels: 64`).
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Mapping

import torch
from torch import nn

from lib_controlnet.errors import ModelFileError

# configs/stable-diffusion/v1-inference.yaml, unet_config.params (use_checkpoint is a training switch)
V1_INFERENCE = dict(
    image_size=32,
    in_channels=4,
    out_channels=4,
    model_channels=320,
    attention_resolutions=[4, 2, 1],
    num_res_blocks=2,
    channel_mult=[1, 2, 4, 4],
    num_heads=8,
    use_spatial_transformer=True,
    transformer_depth=1,
    context_dim=768,
    legacy=False,
)

Shapes = Mapping[str, tuple[int, ...]]


def _indices(shapes: Shapes, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in shapes if (m := rx.match(k))})


def unet_config_from_shapes(shapes: Shapes, family: str = "sd1") -> dict:
    """`UNetModel` keyword arguments for an SD1.x/2.x state dict (UNet keys without prefix)."""
    try:
        model_channels, in_channels = shapes["input_blocks.0.0.weight"][:2]
        out_channels = shapes["out.2.weight"][0]
        res_per_level: list[int] = [0]
        widths: list[int] = []
        attention_levels: set[int] = set()
        for n in _indices(shapes, r"input_blocks\.(\d+)\.")[1:]:
            if f"input_blocks.{n}.0.op.weight" in shapes:
                res_per_level.append(0)
                continue
            level = len(res_per_level) - 1
            width = shapes[f"input_blocks.{n}.0.out_layers.3.weight"][0]
            if res_per_level[-1] == 0:
                widths.append(width)
            res_per_level[-1] += 1
            if f"input_blocks.{n}.1.proj_in.weight" in shapes:
                attention_levels.add(level)
        to_k = next(v for k, v in shapes.items() if k.endswith("attn2.to_k.weight"))
        proj_in = next(v for k, v in shapes.items() if k.endswith("proj_in.weight"))
        depth = len(_indices(shapes, r"input_blocks\.\d+\.1\.transformer_blocks\.(\d+)\."))
    except (KeyError, StopIteration, IndexError) as e:
        raise ModelFileError(f"the UNet does not have the SD1.x/2.x ldm layout (missing {e})") from None
    if len(set(res_per_level)) != 1:
        raise ModelFileError(f"unsupported UNet layout: {res_per_level} res blocks per level")
    return dict(
        image_size=32,
        in_channels=in_channels,
        out_channels=out_channels,
        model_channels=model_channels,
        attention_resolutions=[2**level for level in sorted(attention_levels, reverse=True)],
        num_res_blocks=res_per_level[0],
        channel_mult=[w // model_channels for w in widths],
        **({"num_heads": -1, "num_head_channels": 64} if family == "sd2" else {"num_heads": 8}),
        use_spatial_transformer=True,
        transformer_depth=max(depth, 1),
        context_dim=to_k[1],
        use_linear_in_transformer=len(proj_in) == 2,
        legacy=False,
    )


@contextlib.contextmanager
def quiet():
    """ldm prints on import and construction ("No module 'xformers'..."); keep the host's output clean."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def unet_class():
    with quiet():
        from ldm.modules.diffusionmodules.openaimodel import UNetModel
    return UNetModel


def build_unet(config: dict) -> nn.Module:
    with quiet():
        return unet_class()(**config)


def load_unet(state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype = torch.float32,
              family: str = "sd1") -> nn.Module:
    """Build on the meta device (no time spent on random init) and take the file's tensors key for key."""
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    if family == "sdxl":
        from .sgm_unet import SgmUNet, layout_from_shapes

        layout = layout_from_shapes(shapes)
        with torch.device("meta"):
            unet = SgmUNet(layout)
    else:
        with torch.device("meta"):
            unet = build_unet(unet_config_from_shapes(shapes, family))
    load_exact(unet, state_dict, dtype, "UNet")
    return unet.eval().requires_grad_(False)


def load_exact(module: nn.Module, state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype, what: str) -> None:
    """load_state_dict(assign=True) after checking that the key sets and shapes agree exactly."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = sorted(k for k in expected if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        raise ModelFileError(
            f"the {what} weights do not fit the {what} built from them: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shape {wrong[:5]}"
        )
    module.load_state_dict({k: state_dict[k].to(dtype) for k in expected}, strict=True, assign=True)
