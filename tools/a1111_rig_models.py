"""Random-weight models for the A1111 rig, in the published layouts (key names, shapes; fp16 safetensors).

Run by `tools/a1111_rig.sh` with the WebUI's python and its `ldm` (repositories/stable-diffusion-stability-ai) on
the path: `python tools/a1111_rig_models.py --webui WEBUI --models-dir MODELS`.

Every file is reproducible: torch's generator is seeded from the file's name before its modules are built (their
own initialisation draws the weights), then every parameter that is all zeros (zero convs, norm and Linear biases)
is redrawn from N(0, 0.02) with a generator seeded from its key. Left at zero, a zero conv would make a ControlNet
change nothing, and CLIP's final LayerNorm bias at 0 makes A1111's "Original" emphasis divide ~0 by ~0 (NaN latents).

To add a model (a T2I-Adapter, a Control-LoRA, an IP-Adapter and its image encoder, an SDXL checkpoint, ...):
write one function decorated with `@model("<models-dir subfolder>/<published file name>")` that returns its
state dict (use `ldm_unet`, `seeded` and friends below), and nothing else: `finish()` redraws the zeros and casts
to fp16 for every model, the next build makes the file, and later builds keep it until the function's source (or
GENERATOR) changes. Tests find it by its name in the WebUI's lists (e.g. /controlnet/model_list).

Files too large to hold in memory (the full-size SDXL checkpoint: 3.5 G values) are planned instead: the function
returns `Planned` entries (shape, stored dtype, and how to draw the values) and `make()` writes the safetensors
file tensor by tensor, so at most one tensor is in memory (`planned_like` gives every parameter the values PyTorch's
default initialisation would draw, from a generator seeded by its key). Helpers such a function relies on go in
its `depends`, so that a change to them remakes the file.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import inspect
import json
import os
import struct
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

GENERATOR = "2"  # bump to remake every file (a change of the shared helpers below)
MANIFEST = "rig-models.json"
CHECKPOINT = "Stable-diffusion/sd15-random.safetensors"
METADATA = {"format": "pt"}  # one key: safetensors writes a metadata map in random order

WEBUI: Path = Path(".")


# ---------------------------------------------------------------------------------------------- registry
class Entry:
    def __init__(self, path: str, build: Callable[[], dict], dtype: str, depends: Sequence[Callable] = ()):
        self.path, self.build, self.dtype, self.depends = path, build, dtype, tuple(depends)

    @property
    def stamp(self) -> str:
        """What the file depends on; computed without importing torch, so a build with nothing to do is quick."""
        source = "".join(inspect.getsource(f) for f in (self.build, *self.depends))
        source += GENERATOR + self.dtype + metadata.version("torch")
        return hashlib.sha256(source.encode()).hexdigest()[:16]


MODELS: list[Entry] = []


def model(path: str, dtype: str = "float16", depends: Sequence[Callable] = ()):
    """Register a builder of the file `path` (relative to the models dir), saved with floats in `dtype`; its
    stamp covers its own source and that of the helpers in `depends`."""
    def register(build):
        MODELS.append(Entry(path, build, dtype, depends))
        return build
    return register


class Planned:
    """One tensor of a file written tensor by tensor: its shape and stored dtype now, its values from `draw()`."""

    __slots__ = ("shape", "dtype", "draw")

    def __init__(self, shape: Sequence[int], dtype: torch.dtype, draw: Callable[[], torch.Tensor]):
        self.shape, self.dtype, self.draw = tuple(int(n) for n in shape), dtype, draw


# ---------------------------------------------------------------------------------------------- helpers
def seeded(name: str) -> None:
    """Seed torch's global generator from a name, so that building modules draws the same weights every time."""
    import torch

    torch.manual_seed(zlib.crc32(name.encode()))


def ldm_unet(**config):
    from ldm.modules.diffusionmodules.openaimodel import UNetModel

    return UNetModel(**config)


def inference_config(name: str):
    """One of A1111's (ldm's) model configs, e.g. `v1-inference.yaml`, as an OmegaConf object."""
    from omegaconf import OmegaConf

    return OmegaConf.load(WEBUI / "configs" / name)


def redraw_zeros(state: dict[str, torch.Tensor], skip: Callable[[str], bool] = lambda key: False) -> int:
    """Redraw all-zero floating tensors from N(0, 0.02), each from a generator seeded by its key."""
    import torch

    count = 0
    for key, value in state.items():
        if value.is_floating_point() and value.numel() and not skip(key) and not value.any():
            gen = torch.Generator().manual_seed(zlib.crc32(key.encode()))
            state[key] = torch.randn(value.shape, generator=gen, dtype=torch.float32).mul_(0.02).to(value.dtype)
            count += 1
    return count


def controlnet_from_unet(unet, hint: tuple[int, ...] = (3, 16, 16, 32, 32, 96, 96, 256)) -> dict[str, torch.Tensor]:
    """An original-layout ControlNet (lllyasviel's cldm): the UNet's encoder (time_embed, input_blocks,
    middle_block), the hint encoder (eight 3x3 convs at the even indexes, SiLUs between them, three at stride 2),
    one 1x1 zero conv after each input block and one after the middle block."""
    import torch

    state = {k: v for k, v in unet.state_dict().items()
             if k.startswith(("time_embed.", "input_blocks.", "middle_block."))}
    widths = (*hint, unet.model_channels)
    for i in range(len(widths) - 1):
        conv = torch.nn.Conv2d(widths[i], widths[i + 1], 3, padding=1, stride=2 if i in (2, 4, 6) else 1)
        state[f"input_hint_block.{2 * i}.weight"], state[f"input_hint_block.{2 * i}.bias"] = conv.weight, conv.bias
    channels = [unet.model_channels]
    for level, mult in enumerate(unet.channel_mult):
        channels += [unet.model_channels * mult] * unet.num_res_blocks[level]  # ldm keeps a count per level
        if level < len(unet.channel_mult) - 1:
            channels.append(unet.model_channels * mult)
    assert len(channels) == len(unet.input_blocks), (len(channels), len(unet.input_blocks))
    for i, ch in enumerate(channels):
        conv = torch.nn.Conv2d(ch, ch, 1)
        state[f"zero_convs.{i}.0.weight"], state[f"zero_convs.{i}.0.bias"] = conv.weight, conv.bias
    mid = channels[-1]
    conv = torch.nn.Conv2d(mid, mid, 1)
    state["middle_block_out.0.weight"], state["middle_block_out.0.bias"] = conv.weight, conv.bias
    return {k: v.detach() for k, v in state.items()}


def sd15_unet_config() -> dict:
    params = dict(inference_config("v1-inference.yaml").model.params.unet_config.params)
    return {k: (list(v) if not isinstance(v, (int, float, bool, str)) else v) for k, v in params.items()}


def prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in state.items()}


def planned_like(path: str, shapes: dict[str, tuple[int, ...]], dtype: torch.dtype,
                 exact: dict[str, Callable[[], torch.Tensor]] | None = None) -> dict[str, Planned]:
    """Values as PyTorch's default initialisation draws them, one generator per key (seeded from `path` and the
    key): a weight of 2+ dims (Linear, Conv) U(+-1/sqrt(fan_in)), its bias the same bound; embeddings
    (token, position) N(0, 0.02); a 1-dim weight (a norm's scale) ones; other biases (norms, attention in/out
    projections without a shaped sibling) N(0, 0.02), never zero (see the module docstring). `exact` keys (buffers
    such as position ids or a noise schedule) keep the values and dtype their function returns."""
    import math

    import torch

    exact = exact or {}

    def draw(key: str, shape: tuple[int, ...]) -> Callable[[], torch.Tensor]:
        def values() -> torch.Tensor:
            gen = torch.Generator().manual_seed(zlib.crc32(f"{path}:{key}".encode()))
            stem = key.rsplit(".", 1)[0]
            sibling = shapes.get(stem + ".weight") if key.endswith("bias") else None
            if len(shape) >= 2 and "embedding" in key:
                return torch.randn(shape, generator=gen).mul_(0.02)
            if len(shape) >= 2:
                bound = 1 / math.sqrt(math.prod(shape[1:]))
                return torch.rand(shape, generator=gen).mul_(2 * bound).sub_(bound)
            if key.endswith("weight") and len(shape) == 1:
                return torch.ones(shape)
            if sibling is not None and len(sibling) >= 2:
                bound = 1 / math.sqrt(math.prod(sibling[1:]))
                return torch.rand(shape, generator=gen).mul_(2 * bound).sub_(bound)
            return torch.randn(shape, generator=gen).mul_(0.02)
        return values

    plan = {}
    for key, shape in shapes.items():
        if key in exact:
            value = exact[key]()
            plan[key] = Planned(value.shape, value.dtype, lambda value=value: value)
        else:
            plan[key] = Planned(shape, dtype, draw(key, shape))
    return plan


SD_XL_BASE = "repositories/generative-models/configs/inference/sd_xl_base.yaml"  # the config A1111 picks for SDXL


def sgm_sdxl_shapes(config_path: str = SD_XL_BASE) -> tuple[dict[str, tuple[int, ...]], dict[str, Callable]]:
    """Key -> shape of sgm's DiffusionEngine built from one of A1111's SDXL configs on the meta device (no weights
    allocated), i.e. the key set sgm saves and A1111 loads; and the functions giving its buffers' exact values
    (the noise schedule `denoiser.sigmas`, CLIP-L's `position_ids`). OpenCLIP's tower is built without its
    pretrained download and its visual half is dropped (as sgm does); CLIP-L from the offline config."""
    import open_clip
    import sgm.models.diffusion as diffusion
    import sgm.modules.encoders.modules as encoders
    import torch
    from omegaconf import OmegaConf
    from sgm.util import instantiate_from_config
    from transformers import CLIPTextConfig, CLIPTextModel

    def part(config):  # the denoiser computes its schedule with numpy: on the CPU (it is small)
        if str(config.get("target", "")).endswith("Denoiser"):
            with torch.device("cpu"):
                return instantiate_from_config(config)
        return instantiate_from_config(config)

    config = OmegaConf.load(WEBUI / config_path)
    clip_from_pretrained, create = encoders.CLIPTextModel.from_pretrained, open_clip.create_model_and_transforms
    encoders.CLIPTextModel.from_pretrained = lambda name, **kw: CLIPTextModel(CLIPTextConfig.from_pretrained(name))
    open_clip.create_model_and_transforms = \
        lambda arch, device=None, pretrained=None, **kw: create(arch, device="meta", pretrained=None, **kw)
    diffusion.instantiate_from_config = part
    try:
        with torch.device("meta"):
            engine = instantiate_from_config(config.model)
    finally:
        encoders.CLIPTextModel.from_pretrained, open_clip.create_model_and_transforms = clip_from_pretrained, create
        diffusion.instantiate_from_config = instantiate_from_config
    state = engine.state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    params = {k for k, _ in engine.named_parameters()}
    exact = {}
    for key in set(state) - params:
        if key == "denoiser.sigmas":
            exact[key] = lambda: state["denoiser.sigmas"].clone()
        elif key.endswith("position_ids"):
            exact[key] = lambda n=shapes[key][-1]: torch.arange(n, dtype=torch.int64)[None]
        else:
            raise SystemExit(f"sgm_sdxl_shapes: no exact value known for the buffer {key} {shapes[key]}")
    return shapes, exact


def diffusers_sdxl_small_controlnet_shapes(hint: tuple[int, ...] = (16, 32, 96, 256)) -> dict[str, tuple[int, ...]]:
    """Key -> shape of diffusers' SDXL ControlNet "small" (diffusers/controlnet-canny-sdxl-1.0-small's config:
    three DownBlock2D levels 320/640/1280 without attention, a UNetMidBlock2D of one resnet, text_time addition
    embedding over 2816, hint encoder 16/32/96/256) in diffusers' names; tests/test_rig_models.py checks it against
    diffusers' ControlNetModel with that config."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(key, c_out, c_in, k):
        shapes[f"{key}.weight"], shapes[f"{key}.bias"] = (c_out, c_in, k, k), (c_out,)

    def linear(key, c_out, c_in):
        shapes[f"{key}.weight"], shapes[f"{key}.bias"] = (c_out, c_in), (c_out,)

    def norm(key, c):
        shapes[f"{key}.weight"], shapes[f"{key}.bias"] = (c,), (c,)

    def resnet(key, c_in, c_out):
        norm(f"{key}.norm1", c_in)
        conv(f"{key}.conv1", c_out, c_in, 3)
        linear(f"{key}.time_emb_proj", c_out, 1280)
        norm(f"{key}.norm2", c_out)
        conv(f"{key}.conv2", c_out, c_out, 3)
        if c_in != c_out:
            conv(f"{key}.conv_shortcut", c_out, c_in, 1)

    conv("conv_in", 320, 4, 3)
    linear("time_embedding.linear_1", 1280, 320)
    linear("time_embedding.linear_2", 1280, 1280)
    linear("add_embedding.linear_1", 1280, 2816)
    linear("add_embedding.linear_2", 1280, 1280)
    conv("controlnet_cond_embedding.conv_in", hint[0], 3, 3)
    for i, (a, b) in enumerate(zip(hint, hint[1:])):
        conv(f"controlnet_cond_embedding.blocks.{2 * i}", a, a, 3)
        conv(f"controlnet_cond_embedding.blocks.{2 * i + 1}", b, a, 3)
    conv("controlnet_cond_embedding.conv_out", 320, hint[-1], 3)
    widths, c_in, residuals = (320, 640, 1280), 320, [320]
    for level, width in enumerate(widths):
        for r in range(2):
            resnet(f"down_blocks.{level}.resnets.{r}", c_in, width)
            c_in = width
            residuals.append(width)
        if level < len(widths) - 1:
            conv(f"down_blocks.{level}.downsamplers.0.conv", width, width, 3)
            residuals.append(width)
    for i, width in enumerate(residuals):
        conv(f"controlnet_down_blocks.{i}", width, width, 1)
    resnet("mid_block.resnets.0", 1280, 1280)
    conv("controlnet_mid_block", 1280, 1280, 1)
    return shapes


# ---------------------------------------------------------------------------------------------- the models
@model(CHECKPOINT)
def sd15_checkpoint():
    """SD1.5 as published (v1-5-pruned-emaonly): ldm's LatentDiffusion from configs/v1-inference.yaml, with the
    CLIP text model built from the offline config (A1111 takes its weights from the checkpoint too)."""
    import ldm.modules.encoders.modules as encoders
    from ldm.util import instantiate_from_config
    from transformers import CLIPTextConfig, CLIPTextModel

    original = encoders.CLIPTextModel.from_pretrained
    encoders.CLIPTextModel.from_pretrained = lambda name, **kw: CLIPTextModel(CLIPTextConfig.from_pretrained(name))
    try:
        sd = instantiate_from_config(inference_config("v1-inference.yaml").model)
    finally:
        encoders.CLIPTextModel.from_pretrained = original
    return {k: v.detach() for k, v in sd.state_dict().items()}


@model("ControlNet/control_v11p_sd15_canny.safetensors")
def sd15_controlnet_canny():
    return prefixed("control_model.", controlnet_from_unet(ldm_unet(**sd15_unet_config())))


@model("ControlNet/control_v11f1p_sd15_depth.safetensors")
def sd15_controlnet_depth():
    return prefixed("control_model.", controlnet_from_unet(ldm_unet(**sd15_unet_config())))


@model("ControlNet/t2iadapter_depth_sd14v1.safetensors")
def sd15_t2i_adapter_depth():
    """TencentARC's full adapter as published (t2iadapter_*_sd14v1: `Adapter(cin=192, channels=[320, 640, 1280,
    1280], nums_rb=2, ksize=1, sk=True, use_conv=False)`): pixel-unshuffle 8, conv_in, body.{level*2 + r} blocks
    with a 1x1 in_conv where the width changes."""
    import torch

    state = {}

    def conv(key, c_in, c_out, k):
        m = torch.nn.Conv2d(c_in, c_out, k, padding=k // 2)
        state[f"{key}.weight"], state[f"{key}.bias"] = m.weight, m.bias

    channels = (320, 640, 1280, 1280)
    conv("conv_in", 3 * 64, channels[0], 3)
    for level, width in enumerate(channels):
        for r in range(2):
            block = f"body.{level * 2 + r}"
            if r == 0 and level > 0 and channels[level - 1] != width:
                conv(f"{block}.in_conv", channels[level - 1], width, 1)
            conv(f"{block}.block1", width, width, 3)
            conv(f"{block}.block2", width, width, 1)
    return {k: v.detach() for k, v in state.items()}


@model("ControlNet/control-lora-canny-rank128.safetensors")
def sd15_control_lora_canny():
    """Stability's Control-LoRA layout for SD1.5 (`lora_controlnet`; `X.up` [out, 128(, 1, 1)] and `X.down`
    [128, in(, k, k)] in place of every Linear/Conv2d weight of the UNet part; biases, norms, the hint encoder and
    the zero convs in full): the ControlNet is the host checkpoint's UNet plus up @ down."""
    import torch

    cn = controlnet_from_unet(ldm_unet(**sd15_unet_config()))
    state = {"lora_controlnet": torch.ones(1)}
    for key, value in cn.items():
        if key.startswith(("time_embed.", "input_blocks.", "middle_block.")) and key.endswith(".weight") \
                and value.ndim in (2, 4):
            module = key[: -len(".weight")]
            state[module + ".up"] = torch.randn(value.shape[0], 128, *([1] * (value.ndim - 2))) * 0.02
            state[module + ".down"] = torch.randn(128, *value.shape[1:]) * 0.02
        else:
            state[key] = value
    return state


@model("ControlNet/control_v11f1e_sd15_tile.safetensors")
def sd15_controlnet_tile():
    return prefixed("control_model.", controlnet_from_unet(ldm_unet(**sd15_unet_config())))


@model("ControlNet/ip-adapter-plus_sd15.safetensors")
@model("ControlNet/ip-adapter-plus-face_sd15.safetensors")
def sd15_ip_adapter_plus():
    """h94/IP-Adapter's ip-adapter-plus_sd15 and ip-adapter-plus-face_sd15 (.safetensors: flat keys, the two
    groups of the .bin as prefixes). `image_proj.*`: tencent-ailab's Resampler(dim=768, depth=4, dim_head=64,
    heads=12, num_queries=16, embedding_dim=1280 (ViT-H's hidden width), output_dim=768, ff_mult=4): latents,
    proj_in, 4 x [PerceiverAttention (norm1, norm2, to_q, to_kv, to_out; no biases), FeedForward (LayerNorm,
    Linear x4, GELU, Linear back; no biases)], proj_out, norm_out. `ip_adapter.{2n+1}.to_k_ip/to_v_ip.weight`
    [width, 768] for the n-th cross-attention in diffusers' processor order (down blocks, up blocks, mid
    block; the even numbers are the self-attentions, which have none). Both files share this layout."""
    import torch
    from torch import nn

    dim, heads, head_dim, queries, clip_width, cross = 768, 12, 64, 16, 1280, 768
    inner = heads * head_dim
    state = {"image_proj.latents": torch.randn(1, queries, dim) / dim**0.5}  # the Resampler's own init

    def linear(key, n_in, n_out, bias=True):
        m = nn.Linear(n_in, n_out, bias=bias)
        state[f"{key}.weight"] = m.weight
        if bias:
            state[f"{key}.bias"] = m.bias

    def norm(key, width):
        m = nn.LayerNorm(width)
        state[f"{key}.weight"], state[f"{key}.bias"] = m.weight, m.bias

    linear("image_proj.proj_in", clip_width, dim)
    for i in range(4):
        p = f"image_proj.layers.{i}"
        norm(f"{p}.0.norm1", dim)
        norm(f"{p}.0.norm2", dim)
        linear(f"{p}.0.to_q", dim, inner, bias=False)
        linear(f"{p}.0.to_kv", dim, 2 * inner, bias=False)
        linear(f"{p}.0.to_out", inner, dim, bias=False)
        norm(f"{p}.1.0", dim)
        linear(f"{p}.1.1", dim, 4 * dim, bias=False)
        linear(f"{p}.1.3", 4 * dim, dim, bias=False)
    linear("image_proj.proj_out", dim, cross)
    norm("image_proj.norm_out", cross)
    # SD1.5's attention widths (block_out_channels 320, 640, 1280, 1280) in diffusers' processor order
    widths = [320, 320, 640, 640, 1280, 1280] + [1280] * 3 + [640] * 3 + [320] * 3 + [1280]
    for n, width in enumerate(widths):
        linear(f"ip_adapter.{2 * n + 1}.to_k_ip", cross, width, bias=False)
        linear(f"ip_adapter.{2 * n + 1}.to_v_ip", cross, width, bias=False)
    return {k: v.detach() for k, v in state.items()}


@model("annotators/clip_vision/clip_h.safetensors")
def clip_vit_h_image_encoder():
    """The ViT-H/14 image encoder IP-Adapter's SD1.5 files are trained with (h94/IP-Adapter
    models/image_encoder/model.safetensors: transformers' CLIPVisionModelWithProjection, OpenCLIP's ViT-H/14 —
    width 1280, 32 layers of 16 heads, MLP 5120, patch 14 at 224 px, gelu, projection 1024), under the name and
    sub-folder the reference keeps it at (annotator/downloads/clip_vision/clip_h.pth; the rig passes
    --controlnet-annotator-models-path MODELS/annotators). fp16, as the rig's other files."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                              num_attention_heads=16, patch_size=14, image_size=224, projection_dim=1024,
                              hidden_act="gelu", layer_norm_eps=1e-5)
    return {k: v.detach() for k, v in CLIPVisionModelWithProjection(config).state_dict().items()}


SDXL_CHECKPOINT = "Stable-diffusion/sdxl-base-random.safetensors"
SDXL_CONTROLNET = "ControlNet/controlnet-canny-sdxl-1.0-small.safetensors"
# Second names of a file (hard links: no disk): A1111 switches to a refiner only when it is another checkpoint than the
# loaded one, so tests/a1111 uses the base weights under a second name as the refiner.
ALIASES = {"Stable-diffusion/sdxl-base-random-as-refiner.safetensors": SDXL_CHECKPOINT}


@model(SDXL_CHECKPOINT, depends=(planned_like, sgm_sdxl_shapes))
def sdxl_checkpoint():
    """SDXL base 1.0 as published (sd_xl_base_1.0.safetensors): sgm's single file, full size, from the config A1111
    itself picks for it (sd_xl_base.yaml, chosen by `conditioner.embedders.1.model.ln_final.weight` and a 4-channel
    `input_blocks.0.0`): the UNet (`model.diffusion_model.*`), CLIP-L (`conditioner.embedders.0.transformer.*`),
    OpenCLIP ViT-bigG's text tower (`conditioner.embedders.1.model.*`), the VAE (`first_stage_model.*`), and
    `denoiser.sigmas`. 3.5 G values: planned, so written tensor by tensor."""
    import torch

    shapes, exact = sgm_sdxl_shapes()
    return planned_like(SDXL_CHECKPOINT, shapes, torch.float16, exact)


@model(SDXL_CONTROLNET, depends=(planned_like, diffusers_sdxl_small_controlnet_shapes))
def sdxl_controlnet_canny_small():
    """diffusers' SDXL ControlNet "small" as published (controlnet-canny-sdxl-1.0-small's
    diffusion_pytorch_model.fp16.safetensors, diffusers key names): 10 residuals, no attention."""
    import torch

    return planned_like(SDXL_CONTROLNET, diffusers_sdxl_small_controlnet_shapes(), torch.float16)


@model("VAE-approx/vaeapprox-sdxl.pt", dtype="float32")
def sdxl_vae_approx():
    """A1111's live-preview decoder of SDXL latents (modules/sd_vae_approx.py: VAEApprox, eight convs), which A1111
    downloads at the first SDXL generation (it ships only the SD1 one) and this machine cannot: a torch.save'd
    state dict, as published (A1111 loads it with torch.load)."""
    import torch

    widths = ((4, 8, 7), (8, 16, 5), (16, 32, 3), (32, 64, 3), (64, 32, 3), (32, 16, 3), (16, 8, 3), (8, 3, 3))
    state = {}
    for i, (c_in, c_out, k) in enumerate(widths, 1):
        conv = torch.nn.Conv2d(c_in, c_out, k)
        state[f"conv{i}.weight"], state[f"conv{i}.bias"] = conv.weight.detach(), conv.bias.detach()
    return state


# ---------------------------------------------------------------------------------------------- making files
# Tensors that must keep their exact values: the noise schedule and CLIP's position ids (all-zero rows of a
# schedule are data, not an untrained layer).
SCHEDULE = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
            "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
            "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2")


def keep_exact(key: str) -> bool:
    return key in SCHEDULE or key.endswith(("position_ids", "scale_factor"))


def finish(entry: Entry, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Redraw the zeros and cast, in place (one tensor at a time: a checkpoint is never held twice in fp32)."""
    import torch

    dtype = getattr(torch, entry.dtype)
    redrawn = redraw_zeros(state, skip=keep_exact)
    for key in list(state):
        value = state[key]
        if value.is_floating_point() and not keep_exact(key):
            value = value.to(dtype)
        state[key] = value.contiguous()
    out = state
    for key, value in out.items():
        if value.is_floating_point() and not keep_exact(key):
            assert value.any() and torch.isfinite(value).all(), f"{entry.path}: {key} is zero or not finite"
    params = sum(v.numel() for k, v in out.items() if not keep_exact(k))
    print(f"[a1111-rig] {entry.path}: {len(out)} tensors, {params / 1e6:.1f} M values, {redrawn} all-zero "
          f"tensors redrawn", file=sys.stderr)
    return out


SAFETENSORS_DTYPES = {"float16": "F16", "bfloat16": "BF16", "float32": "F32", "float64": "F64", "int64": "I64",
                      "int32": "I32"}


def write_planned(target: Path, entry: Entry, plan: dict[str, Planned]) -> None:
    """A safetensors file (8-byte little-endian header length, JSON header, the tensors' bytes in header order)
    written one tensor at a time: each is drawn, checked (floats: not all zero, finite), written and dropped."""
    import math

    import torch

    assert sys.byteorder == "little", "safetensors stores little-endian bytes"
    keys = sorted(plan)
    header: dict = {"__metadata__": METADATA}
    offset = 0
    for key in keys:
        item = plan[key]
        size = math.prod(item.shape) * item.dtype.itemsize
        header[key] = {"dtype": SAFETENSORS_DTYPES[str(item.dtype).removeprefix("torch.")], "shape": list(item.shape),
                       "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    values = 0
    with open(target, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for key in keys:
            item = plan[key]
            value = item.draw().to(item.dtype).contiguous()
            assert tuple(value.shape) == item.shape, (entry.path, key, value.shape, item.shape)
            if value.is_floating_point() and not keep_exact(key):
                assert value.any() and torch.isfinite(value).all(), f"{entry.path}: {key} is zero or not finite"
                values += value.numel()
            f.write(value.numpy().tobytes())
            del value
    print(f"[a1111-rig] {entry.path}: {len(keys)} tensors, {values / 1e6:.1f} M values, "
          f"{(offset + len(blob) + 8) / 2**30:.2f} GiB, written tensor by tensor", file=sys.stderr)


def save_pt(state: dict[str, torch.Tensor], target: Path) -> None:
    """torch.save's zip, with only the entries files saved by the torch of 2023 have (data.pkl, version,
    byteorder, data/N): A1111's safe unpickler (modules/safe.py) refuses newer ones such as .format_version."""
    import re
    import zipfile

    import torch

    raw = target.with_name(target.name + ".raw")
    torch.save(state, raw)
    keep = re.compile(r"^[^/]+/(data/\d+|version|byteorder|data\.pkl)$")
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            if keep.match(info.filename):
                dst.writestr(info, src.read(info.filename))
    raw.unlink()
    torch.load(target, weights_only=True)  # still readable


def make(models_dir: Path, only: str = "") -> None:
    manifest_path = models_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    for stale in set(manifest) - {e.path for e in MODELS}:  # a model someone removed from the list
        (models_dir / stale).unlink(missing_ok=True)
        del manifest[stale]
    for entry in MODELS:
        if only not in entry.path:
            continue
        target = models_dir / entry.path
        if manifest.get(entry.path) == entry.stamp and target.is_file():
            continue
        import torch
        from safetensors.torch import save_file

        t0 = time.monotonic()
        target.parent.mkdir(parents=True, exist_ok=True)
        seeded(entry.path)
        tmp = target.with_name(target.name + ".tmp")
        with torch.no_grad():
            state = entry.build()
            gc.collect()  # the modules the state came from
            if state and all(isinstance(v, Planned) for v in state.values()):
                write_planned(tmp, entry, state)
            elif target.suffix == ".pt":  # a format its host reads only through torch.load
                save_pt(finish(entry, state), tmp)
            else:
                save_file(finish(entry, state), str(tmp), metadata=METADATA)
        del state
        os.replace(tmp, target)
        manifest[entry.path] = entry.stamp
        replace_text(manifest_path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        print(f"[a1111-rig] made {target} in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    replace_text(manifest_path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    for alias, source in ALIASES.items():
        src, dst = models_dir / source, models_dir / alias
        if src.is_file() and not (dst.is_file() and os.path.samefile(src, dst)):
            dst.unlink(missing_ok=True)
            os.link(src, dst)
    replace_text(models_dir / "checkpoint.txt", str(models_dir / CHECKPOINT) + "\n")


def replace_text(path: Path, text: str) -> None:
    """Write a new file over `path` rather than into it: a helper's models dir is a hard-linked copy of the
    main cache's (`cp -al`), and writing into the shared inode would change the main cache's manifest and
    point its checkpoint.txt at the copy."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)



def main() -> None:
    global WEBUI
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webui", type=Path, required=True, help="the WebUI tree (for configs/)")
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--only", default="", help="make only the files whose path contains this")
    args = parser.parse_args()
    WEBUI = args.webui
    make(args.models_dir, args.only)


if __name__ == "__main__":
    main()
