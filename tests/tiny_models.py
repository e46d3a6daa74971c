"""Tiny random models in the real key layouts, built offline: the test suite's only model source.

- diffusers `ControlNetModel`s (SD1.5-like and SDXL-like) from config dicts: the oracle.
- ldm `UNetModel`s from stable-diffusion-sdkit (the ldm code A1111 runs) and ControlNets that copy
  their encoder, as `cldm.ControlNet` is initialised from the UNet.
Every zero-initialised tensor (zero convs, the hint encoder's last conv, ResBlock out convs) is redrawn,
otherwise residuals are exactly zero and no test could fail.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from lib_controlnet.models.conversion.diffusers_controlnet import diffusers_to_ldm_names
from lib_controlnet.models.networks.arch import arch_from_shapes
from lib_controlnet.models.networks.controlnet import ControlNet

SD15_LIKE = dict(
    in_channels=4,
    conditioning_channels=3,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    block_out_channels=(32, 64, 64, 64),
    layers_per_block=2,
    cross_attention_dim=32,
    attention_head_dim=8,  # diffusers' legacy name: 8 heads, as SD1.5's cldm config
    norm_num_groups=32,
    use_linear_projection=False,
)

SDXL_LIKE = dict(
    in_channels=4,
    conditioning_channels=3,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    block_out_channels=(64, 128, 128),
    layers_per_block=2,
    transformer_layers_per_block=(1, 1, 2),
    cross_attention_dim=64,
    attention_head_dim=(1, 2, 2),  # heads per level = channels / 64, as SDXL
    norm_num_groups=32,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=32 + 6 * 8,  # text_embeds (32) + 6 time ids x 8
)


def randomize_(module: nn.Module, seed: int, std: float = 0.05) -> nn.Module:
    """Redraw every parameter the init left at zero (and perturb the rest) so all paths carry signal."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            noise = torch.randn(p.shape, generator=g) * std
            if p.abs().max() == 0:
                p.copy_(noise)
            else:
                p.add_(noise)
    return module


def diffusers_controlnet(config: dict, seed: int = 0):
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    return randomize_(ControlNetModel(**config), seed).eval()


def ldm_state_dict_from_diffusers(model) -> dict[str, torch.Tensor]:
    """Our own converter applied to a diffusers model: the original layout, `control_model.` prefix."""
    sd = model.state_dict()
    return {"control_model." + new: sd[old].contiguous() for old, new in diffusers_to_ldm_names(sd).items()}


def save_ldm_safetensors(model, path: Path, dtype: torch.dtype | None = None) -> Path:
    sd = ldm_state_dict_from_diffusers(model)
    if dtype is not None:
        sd = {k: v.to(dtype) for k, v in sd.items()}
    save_file(sd, str(path))
    return path


# --- ldm UNets (stable-diffusion-sdkit) ----------------------------------------------------------------------

SD_LIKE_UNET = dict(
    image_size=16,
    in_channels=4,
    out_channels=4,
    model_channels=32,
    attention_resolutions=[1, 2, 4],
    num_res_blocks=2,
    channel_mult=(1, 2, 2, 2),
    num_heads=8,
    use_spatial_transformer=True,
    transformer_depth=1,
    context_dim=32,
    legacy=False,
)  # 12 input blocks: the SD1.x/2.x layout (13 residuals), scaled down

SDXL_LAYOUT_UNET = dict(
    image_size=16,
    in_channels=4,
    out_channels=4,
    model_channels=64,
    attention_resolutions=[2, 4],
    num_res_blocks=2,
    channel_mult=(1, 2, 2),
    num_head_channels=64,
    use_spatial_transformer=True,
    use_linear_in_transformer=True,
    transformer_depth=1,
    context_dim=64,
    legacy=False,
)  # 9 input blocks: SDXL's layout (10 residuals), scaled down


def ldm_unet(config: dict, seed: int = 0) -> nn.Module:
    from ldm.modules.diffusionmodules.openaimodel import UNetModel

    torch.manual_seed(seed)
    return randomize_(UNetModel(**config), seed).eval()


HINT_CHANNELS = (16, 16, 32, 32, 96, 96, 256)  # the published input_hint_block widths before conv_out


def controlnet_state_dict_from_unet(unet: nn.Module, seed: int = 1, hint_channels: int = 3) -> dict:
    """A ControlNet in the original layout whose encoder copies `unet`'s (as cldm initialises it)."""
    unet_sd = unet.state_dict()
    shapes = {k: tuple(v.shape) for k, v in unet_sd.items() if k.startswith(("time_embed.", "input_blocks.",
                                                                             "middle_block.", "label_emb."))}
    mc = unet_sd["input_blocks.0.0.weight"].shape[0]
    widths = (hint_channels, *HINT_CHANNELS, mc)
    for i in range(len(widths) - 1):
        shapes[f"input_hint_block.{2 * i}.weight"] = (widths[i + 1], widths[i], 3, 3)
        shapes[f"input_hint_block.{2 * i}.bias"] = (widths[i + 1],)
    net = ControlNet(_arch_with_unet_heads(shapes, unet))
    randomize_(net, seed)
    sd = net.state_dict()
    for k, v in unet_sd.items():
        if k in sd:
            sd[k] = v.clone()
    return sd


def _arch_with_unet_heads(shapes, unet):
    """The ldm UNet's own head split (num_heads, or 64-wide heads when num_heads is -1)."""
    from dataclasses import replace

    arch = arch_from_shapes(shapes)
    heads = getattr(unet, "num_heads", -1)
    return replace(arch, num_heads=heads) if heads and heads > 0 else replace(arch, head_dim=64)


def save_state_dict(sd: dict, path: Path, prefix: str = "control_model.") -> Path:
    save_file({prefix + k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


# --- ControlNet Union / ProMax (xinsir SDXL) ---------------------------------------------------------------

def union_config(num_control_type: int = 6) -> dict:
    """diffusers ControlNetUnionModel, SDXL-like and tiny; the task head as published, scaled to 64 channels."""
    return dict(SDXL_LIKE, conditioning_embedding_out_channels=(16, 32, 96, 256), num_control_type=num_control_type,
                num_trans_channel=64, num_trans_head=8, num_trans_layer=1, num_proj_channel=64)


def diffusers_union(config: dict, seed: int = 0):
    from diffusers import ControlNetUnionModel

    torch.manual_seed(seed)
    return randomize_(ControlNetUnionModel(**config), seed).eval()


class SgmLikeUNet(nn.Module):
    """sdkit's ldm UNet made class-conditional the way sgm's SDXL UNet is (A1111 runs sgm for SDXL):
    `label_emb.0` = Linear-SiLU-Linear over the adm vector y, added to the time embedding. The forward is
    ldm's (and sgm's) loop; the blocks are sdkit's."""

    def __init__(self, config: dict, adm_in_channels: int):
        super().__init__()
        from ldm.modules.diffusionmodules.openaimodel import UNetModel

        inner = UNetModel(**config)
        self.model_channels = inner.model_channels
        ted = inner.model_channels * 4
        self.time_embed, self.input_blocks = inner.time_embed, inner.input_blocks
        self.middle_block, self.output_blocks, self.out = inner.middle_block, inner.output_blocks, inner.out
        self.label_emb = nn.Sequential(nn.Sequential(nn.Linear(adm_in_channels, ted), nn.SiLU(), nn.Linear(ted, ted)))

    def forward(self, x, timesteps=None, context=None, y=None, **kwargs):
        from ldm.modules.diffusionmodules.util import timestep_embedding

        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels)) + self.label_emb(y)
        hs, h = [], x
        for block in self.input_blocks:
            h = block(h, emb, context)
            hs.append(h)
        h = self.middle_block(h, emb, context)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb, context)
        return self.out(h)


SDXL_ADM = 16


def sdxl_like_unet(seed: int = 0) -> nn.Module:
    """A class-conditional UNet in SDXL's layout (9 input blocks, 10 residuals), scaled down."""
    torch.manual_seed(seed)
    return randomize_(SgmLikeUNet(SDXL_LAYOUT_UNET, SDXL_ADM), seed).eval()


def union_state_dict_from_unet(unet: nn.Module, slots: int = 6, seed: int = 1, type_dim: int = 8) -> dict:
    """A union ControlNet in the ldm layout (plus the task head's published names) whose encoder copies `unet`."""
    from lib_controlnet.models.networks.controlnet_union import ControlNetUnion, UnionSpec

    sd = controlnet_state_dict_from_unet(unet, seed=seed)
    mc = sd["input_blocks.0.0.weight"].shape[0]
    arch = _arch_with_unet_heads({k: tuple(v.shape) for k, v in sd.items()}, unet)
    head = randomize_(ControlNetUnion(arch, UnionSpec(slots, type_dim, mc, mc, heads=8, layers=1)), seed + 100)
    sd.update({k: v for k, v in head.state_dict().items() if k not in sd})
    return sd
