"""The A1111 rig's IP-Adapter files (tools/a1111_rig_models.py) have the published layout, as diffusers reads it:
`image_proj.*` loads strictly into diffusers' IPAdapterPlusImageProjection, and the `ip_adapter.{n}.to_k_ip /
to_v_ip` numbers and widths are those diffusers' loader derives from SD1.5's attention processors. Our own
detection reads the file as an SD1.5 plus adapter with 16 tokens."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SD15 = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, cross_attention_dim=768,
            block_out_channels=(320, 640, 1280, 1280), attention_head_dim=8,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)


@pytest.fixture(scope="module")
def plus_state() -> dict[str, torch.Tensor]:
    spec = importlib.util.spec_from_file_location("a1111_rig_models", ROOT / "tools" / "a1111_rig_models.py")
    rig = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rig)
    entries = [e for e in rig.MODELS if "ip-adapter-plus" in e.path]
    assert sorted(e.path for e in entries) == ["ControlNet/ip-adapter-plus-face_sd15.safetensors",
                                               "ControlNet/ip-adapter-plus_sd15.safetensors"]
    rig.seeded(entries[0].path)
    with torch.no_grad():
        return entries[0].build()


def test_ip_adapter_keys_and_widths_are_the_ones_diffusers_derives_for_sd15(plus_state):
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15)
    widths = SD15["block_out_channels"]
    expected = {}
    for number, name in enumerate(unet.attn_processors):  # diffusers' (and the files') numbering
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            width = widths[-1]
        elif name.startswith("up_blocks"):
            width = widths[::-1][int(name.split(".")[1])]
        else:
            width = widths[int(name.split(".")[1])]
        for part in ("to_k_ip", "to_v_ip"):
            expected[f"ip_adapter.{number}.{part}.weight"] = (width, SD15["cross_attention_dim"])
    got = {k: tuple(v.shape) for k, v in plus_state.items() if k.startswith("ip_adapter.")}
    assert got == expected


def test_image_proj_loads_strictly_into_diffusers_plus_projection(plus_state):
    """diffusers' own converter of the published `image_proj` group (it picks the projection by keys, renames
    and loads with strict=True)."""
    from diffusers import UNet2DConditionModel
    from diffusers.models.embeddings import IPAdapterPlusImageProjection

    tiny = UNet2DConditionModel(**{**SD15, "block_out_channels": (32, 64, 64, 64), "norm_num_groups": 8,
                                   "layers_per_block": 1})
    ours = {k[len("image_proj."):]: v for k, v in plus_state.items() if k.startswith("image_proj.")}
    proj = tiny._convert_ip_adapter_image_proj_to_diffusers(ours, low_cpu_mem_usage=False)
    assert isinstance(proj, IPAdapterPlusImageProjection)
    assert (proj.latents.shape, proj.proj_in.in_features) == ((1, 16, 768), 1280)
    assert proj(torch.randn(1, 257, 1280)).shape == (1, 16, 768)


def test_our_detection_reads_an_sd15_plus_adapter(plus_state, tmp_path):
    from safetensors.torch import save_file

    from lib_controlnet.models.loading import load_control_model

    path = tmp_path / "ip-adapter-plus_sd15.safetensors"
    save_file({k: v.contiguous() for k, v in plus_state.items()}, str(path))
    model = load_control_model(path)
    assert (model.kind, model.family, model.variant, model.arch.tokens) == ("ip_adapter", "sd1", "plus", 16)
