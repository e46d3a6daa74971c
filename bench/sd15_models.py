"""Full-size SD1.5 UNet (859 M) and ControlNet (361 M) with random weights, for the benchmarks.

The UNet is ldm's UNetModel (stable-diffusion-sdkit) with v1-inference.yaml's settings; the ControlNet
copies its encoder and adds the published hint encoder and zero convs (cldm_v15.yaml), in the original
`control_model.` layout.
"""

from __future__ import annotations

from pathlib import Path

import torch

SD15_UNET = dict(image_size=32, in_channels=4, out_channels=4, model_channels=320, attention_resolutions=[4, 2, 1],
                 num_res_blocks=2, channel_mult=(1, 2, 4, 4), num_heads=8, use_spatial_transformer=True,
                 transformer_depth=1, context_dim=768, legacy=False)
HINT_WIDTHS = (3, 16, 16, 32, 32, 96, 96, 256, 320)


def sd15_unet(seed: int = 0) -> torch.nn.Module:
    from ldm.modules.diffusionmodules.openaimodel import UNetModel

    torch.manual_seed(seed)
    unet = UNetModel(**SD15_UNET).eval().requires_grad_(False)
    with torch.no_grad():  # ldm zero-initialises out convs; redraw them so every path computes something real
        for p in unet.parameters():
            if p.abs().max() == 0:
                p.normal_(0, 0.02)
    return unet


def sd15_controlnet_state_dict(unet: torch.nn.Module, seed: int = 1, dtype=torch.float16) -> dict:
    g = torch.Generator().manual_seed(seed)
    sd = {k: v.to(dtype) for k, v in unet.state_dict().items()
          if k.startswith(("time_embed.", "input_blocks.", "middle_block."))}

    def rand(*shape):
        return (torch.randn(shape, generator=g) * 0.02).to(dtype)

    for i in range(len(HINT_WIDTHS) - 1):
        sd[f"input_hint_block.{2 * i}.weight"] = rand(HINT_WIDTHS[i + 1], HINT_WIDTHS[i], 3, 3)
        sd[f"input_hint_block.{2 * i}.bias"] = rand(HINT_WIDTHS[i + 1])
    for i, block in enumerate(unet.input_blocks):
        ch = next(m for m in reversed(list(block.modules())) if isinstance(m, torch.nn.Conv2d)).out_channels
        sd[f"zero_convs.{i}.0.weight"] = rand(ch, ch, 1, 1)
        sd[f"zero_convs.{i}.0.bias"] = rand(ch)
    sd["middle_block_out.0.weight"] = rand(1280, 1280, 1, 1)
    sd["middle_block_out.0.bias"] = rand(1280)
    return {"control_model." + k: v.contiguous() for k, v in sd.items()}


def save_sd15_controlnet(path: Path, seed: int = 1) -> Path:
    from safetensors.torch import save_file

    unet = sd15_unet(seed)
    save_file(sd15_controlnet_state_dict(unet, seed), str(path))
    return path
