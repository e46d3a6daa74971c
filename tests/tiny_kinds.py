"""Tiny random T2I-Adapters and Control-LoRAs in the published key layouts, for the tests and benches.

T2I-Adapters: diffusers' `T2IAdapter` (the oracle) with random weights, saved in its own layout or in
TencentARC's original one. The original names come from diffusers' conversion script
(scripts/convert_original_t2i_adapter.py), written here in its direction (original -> diffusers) and checked
to cover the diffusers model exactly, so that this file and the loader's converter (diffusers -> original)
are two independent writings of the mapping.

Control-LoRAs: Stability's layout (`lora_controlnet` marker; `X.up` [out, r(, 1, 1)] / `X.down` [r, in(, k, k)]
for every Linear/Conv2d of the ControlNet's UNet part; biases, norms, hint encoder and zero convs in full).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from tests.tiny_models import randomize_

TINY_T2I_CHANNELS = (32, 64, 64, 64)  # the SD_LIKE_UNET widths at its 4 levels
TINY_T2I_XL_CHANNELS = (64, 128, 128, 128)  # SDXL_LAYOUT_UNET: 64 at 1/2, 128 at 1/2, 1/4, 1/4


def diffusers_t2i(adapter_type: str = "full_adapter", *, in_channels: int = 3, channels=TINY_T2I_CHANNELS,
                  num_res_blocks: int = 2, seed: int = 0):
    from diffusers import T2IAdapter

    torch.manual_seed(seed)
    downscale = 16 if adapter_type == "full_adapter_xl" else 8
    if adapter_type == "light_adapter":
        channels = channels[:3]  # diffusers' light adapter repeats its last width for the 4th feature
    adapter = T2IAdapter(in_channels=in_channels, channels=list(channels), num_res_blocks=num_res_blocks,
                         downscale_factor=downscale, adapter_type=adapter_type)
    return randomize_(adapter, seed, std=0.2).eval()


def original_to_diffusers_names(adapter) -> dict[str, str]:
    """{TencentARC key: diffusers key} for a diffusers T2IAdapter, as diffusers' conversion script maps them."""
    inner = adapter.adapter
    light = type(inner).__name__ == "LightAdapter"
    mapping = {}
    if not light:
        mapping["conv_in.weight"] = "adapter.conv_in.weight"
        mapping["conv_in.bias"] = "adapter.conv_in.bias"
    for i, block in enumerate(inner.body):
        n = len(block.resnets)
        for p in ("weight", "bias"):
            if light:
                mapping[f"body.{i}.in_conv.{p}"] = f"adapter.body.{i}.in_conv.{p}"
                mapping[f"body.{i}.out_conv.{p}"] = f"adapter.body.{i}.out_conv.{p}"
            elif block.in_conv is not None:
                mapping[f"body.{i * n}.in_conv.{p}"] = f"adapter.body.{i}.in_conv.{p}"
            for r in range(n):
                for conv in ("block1", "block2"):
                    original = f"body.{i}.body.{r}.{conv}.{p}" if light else f"body.{i * n + r}.{conv}.{p}"
                    mapping[original] = f"adapter.body.{i}.resnets.{r}.{conv}.{p}"
    assert sorted(mapping.values()) == sorted(adapter.state_dict()), "mapping must cover the diffusers model"
    return mapping


def original_t2i_state_dict(adapter) -> dict[str, torch.Tensor]:
    sd = adapter.state_dict()
    return {orig: sd[diff].contiguous() for orig, diff in original_to_diffusers_names(adapter).items()}


def save_t2i_original(adapter, path: Path) -> Path:
    save_file(original_t2i_state_dict(adapter), str(path))
    return path


def save_t2i_diffusers_file(adapter, path: Path) -> Path:
    """A single .safetensors with diffusers' key names (no config)."""
    save_file({k: v.contiguous() for k, v in adapter.state_dict().items()}, str(path))
    return path


def save_t2i_diffusers_folder(adapter, folder: Path) -> Path:
    adapter.save_pretrained(str(folder), safe_serialization=True)
    return folder


# --- style adapter (no diffusers class: open_clip's transformer blocks are the oracle) ---------------------------

def style_state_dict(width: int = 64, context_dim: int = 768, tokens: int = 8, layers: int = 3, heads: int = 8,
                     seed: int = 0) -> dict[str, torch.Tensor]:
    """`t2iadapter_style_sd14v1`'s layout (width 1024 in the published file) with random weights."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, std=0.2):
        return torch.randn(shape, generator=g) * std

    sd = {"style_embedding": rand(1, tokens, width), "proj": rand(width, context_dim, std=width ** -0.5)}
    for name in ("ln_pre", "ln_post"):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = 1 + rand(width), rand(width)
    for i in range(layers):
        p = f"transformer_layes.{i}."
        sd[p + "attn.in_proj_weight"], sd[p + "attn.in_proj_bias"] = rand(3 * width, width), rand(3 * width)
        sd[p + "attn.out_proj.weight"], sd[p + "attn.out_proj.bias"] = rand(width, width), rand(width)
        for ln in ("ln_1", "ln_2"):
            sd[p + f"{ln}.weight"], sd[p + f"{ln}.bias"] = 1 + rand(width), rand(width)
        sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"] = rand(4 * width, width), rand(4 * width)
        sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"] = rand(width, 4 * width), rand(width)
    return sd


# --- Control-LoRA -------------------------------------------------------------------------------------------------

CONTROL_LORA_PARTS = ("time_embed.", "label_emb.", "input_blocks.", "middle_block.")


def control_lora_state_dict(controlnet_sd: dict[str, torch.Tensor], rank: int = 4, seed: int = 0,
                            std: float = 0.05, lora_biases_as_unet: bool = False) -> dict[str, torch.Tensor]:
    """Stability's layout from an ldm ControlNet state dict whose UNet part is the host UNet's: every
    Linear/Conv2d weight of that part becomes a random up/down pair (the weight itself is not stored), the
    other tensors are perturbed (they are the file's own).

    `lora_biases_as_unet`: keep the biases of LoRA'd layers equal to the UNet's. diffusers' SAI path (peft)
    uses the UNet's biases there and ignores the file's, where the reference, ComfyUI and Forge use the file's;
    with equal biases both readings give the same network.
    """
    g = torch.Generator().manual_seed(seed)
    out = {"lora_controlnet": torch.zeros(1)}
    lora_modules = {k[: -len(".weight")] for k, v in controlnet_sd.items()
                    if k.startswith(CONTROL_LORA_PARTS) and k.endswith(".weight") and v.ndim in (2, 4)}
    for key, value in controlnet_sd.items():
        lora = key.startswith(CONTROL_LORA_PARTS) and key.endswith(".weight") and value.ndim in (2, 4)
        if not lora:
            keep = lora_biases_as_unet and key.endswith(".bias") and key[: -len(".bias")] in lora_modules
            out[key] = (value if keep else value + torch.randn(value.shape, generator=g) * std).contiguous()
            continue
        module = key[: -len(".weight")]
        out_c, in_c = value.shape[:2]
        kernel = value.shape[2:]
        out[module + ".up"] = (torch.randn(out_c, rank, *([1] * len(kernel)), generator=g) * std).contiguous()
        out[module + ".down"] = (torch.randn(rank, in_c, *kernel, generator=g) * std).contiguous()
    return out


def merged_controlnet_state_dict(lora_sd: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> dict:
    """W = W_unet + up @ down written out plainly: the ControlNet a Control-LoRA stands for."""
    merged = {}
    for key, value in lora_sd.items():
        if key == "lora_controlnet" or key.endswith(".down"):
            continue
        if key.endswith(".up"):
            module = key[: -len(".up")]
            w = base[module + ".weight"]
            down = lora_sd[module + ".down"]
            merged[module + ".weight"] = w + (value.flatten(1) @ down.flatten(1)).reshape(w.shape)
        else:
            merged[key] = value
    for key, value in base.items():  # what the file lacks entirely comes from the UNet as it is
        if key.startswith(CONTROL_LORA_PARTS):
            merged.setdefault(key, value)
    return merged
