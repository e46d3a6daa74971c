"""Key names and shapes of the published ControlNet checkpoints, generated without any weights.

SD1.5/SD2.1 (original layout): a ControlNet is the ldm UNet encoder (input_blocks, middle_block,
time_embed) plus input_hint_block and zero convs; we instantiate ldm's UNetModel with the cldm_v15 /
cldm_v21 configs on the meta device and read its shapes. SDXL (full/mid/small): diffusers'
ControlNetModel with the published SDXL configs on the meta device, mapped by our converter.
"""

from __future__ import annotations

import torch

HINT = (3, 16, 16, 32, 32, 96, 96, 256)

CLDM_V15 = dict(image_size=32, in_channels=4, out_channels=4, model_channels=320, attention_resolutions=[4, 2, 1],
                num_res_blocks=2, channel_mult=(1, 2, 4, 4), num_heads=8, use_spatial_transformer=True,
                transformer_depth=1, context_dim=768, legacy=False)
CLDM_V21 = dict(CLDM_V15, num_heads=-1, num_head_channels=64, context_dim=1024, use_linear_in_transformer=True)

SDXL_BASE = dict(in_channels=4, conditioning_channels=3, block_out_channels=(320, 640, 1280), layers_per_block=2,
                 cross_attention_dim=2048, attention_head_dim=(5, 10, 20), use_linear_projection=True,
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816)
SDXL_FULL = dict(SDXL_BASE, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 transformer_layers_per_block=(0, 2, 10))
SDXL_MID = dict(SDXL_BASE, down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
                transformer_layers_per_block=(0, 0, 1))
SDXL_SMALL = dict(SDXL_BASE, down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D"),
                  transformer_layers_per_block=(0, 0, 0), mid_block_type="UNetMidBlock2D")


def _controlnet_from_ldm_unet(config: dict) -> dict[str, tuple[int, ...]]:
    from ldm.modules.diffusionmodules.openaimodel import UNetModel

    with torch.device("meta"):
        unet = UNetModel(**config)
    shapes = {k: tuple(v.shape) for k, v in unet.state_dict().items()
              if k.startswith(("time_embed.", "input_blocks.", "middle_block."))}
    widths = (*HINT, config["model_channels"])
    for i in range(len(widths) - 1):
        shapes[f"input_hint_block.{2 * i}.weight"] = (widths[i + 1], widths[i], 3, 3)
        shapes[f"input_hint_block.{2 * i}.bias"] = (widths[i + 1],)
    n = len(unet.input_blocks)
    for i in range(n):
        ch = shapes[f"input_blocks.{i}.0.weight"][0] if i == 0 else _block_out(shapes, i)
        shapes[f"zero_convs.{i}.0.weight"] = (ch, ch, 1, 1)
        shapes[f"zero_convs.{i}.0.bias"] = (ch,)
    mid = shapes["middle_block.2.out_layers.3.weight"][0]
    shapes["middle_block_out.0.weight"] = (mid, mid, 1, 1)
    shapes["middle_block_out.0.bias"] = (mid,)
    return shapes


def _block_out(shapes, i):
    key = f"input_blocks.{i}.0.out_layers.3.weight"
    return shapes[key][0] if key in shapes else shapes[f"input_blocks.{i}.0.op.weight"][0]


def sd15_shapes(prefix: str = "control_model.") -> dict[str, tuple[int, ...]]:
    return {prefix + k: v for k, v in _controlnet_from_ldm_unet(CLDM_V15).items()}


def sd21_shapes(prefix: str = "control_model.") -> dict[str, tuple[int, ...]]:
    return {prefix + k: v for k, v in _controlnet_from_ldm_unet(CLDM_V21).items()}


def diffusers_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    from diffusers import ControlNetModel

    with torch.device("meta"):
        model = ControlNetModel(**config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# xinsir's controlnet-union-sdxl-1.0 config.json (ProMax: num_control_type 8): an SDXL full ControlNet plus the
# task head; its conditioning embedding keeps the published ControlNet widths.
XINSIR_UNION = dict(SDXL_FULL, conditioning_embedding_out_channels=(16, 32, 96, 256), num_control_type=6,
                    num_trans_channel=320, num_trans_head=8, num_trans_layer=1, num_proj_channel=320)


def diffusers_union_shapes(config: dict = XINSIR_UNION) -> dict[str, tuple[int, ...]]:
    from diffusers import ControlNetUnionModel

    with torch.device("meta"):
        model = ControlNetUnionModel(**config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}
