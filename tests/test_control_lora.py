"""Control-LoRA (Stability's `control-lora-*` layout): equal to diffusers' SAI Control-LoRA path
(`ControlNetModel.from_unet` + `load_lora_adapter`, via peft), built on the live host UNet without copying its
weights, rebuilt when the checkpoint changes, and run by the hook on ldm's UNetModel like a ControlNet.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lib_controlnet import (
    BoundUnit,
    CallInfo,
    ControlHook,
    IncompatibleModelError,
    ModelCache,
    load_control_model,
)
from lib_controlnet.models.conversion.diffusers_controlnet import diffusers_to_ldm_names
from lib_controlnet.models.detection import detect
from tests.test_hook_ldm import hook_state, plain_unet
from tests.tiny_kinds import CONTROL_LORA_PARTS, control_lora_state_dict, merged_controlnet_state_dict
from tests.tiny_models import (
    SD15_LIKE,
    SD_LIKE_UNET,
    SDXL_LAYOUT_UNET,
    SDXL_LIKE,
    controlnet_state_dict_from_unet,
    ldm_unet,
    randomize_,
    save_state_dict,
)

ROOT = Path(__file__).resolve().parent.parent


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# --- against diffusers' SAI path ------------------------------------------------------------------------------

def diffusers_unet(cn_config: dict, seed: int):
    from diffusers import UNet2DConditionModel

    up = {"CrossAttnDownBlock2D": "CrossAttnUpBlock2D", "DownBlock2D": "UpBlock2D"}
    config = {k: v for k, v in cn_config.items() if k not in ("conditioning_channels",)}
    config["up_block_types"] = tuple(up[b] for b in reversed(config["down_block_types"]))
    config["out_channels"] = 4
    config["sample_size"] = 16
    torch.manual_seed(seed)
    return randomize_(UNet2DConditionModel(**config), seed).eval()


@pytest.mark.parametrize("family, config, context, extra", [
    ("sd1", SD15_LIKE, 32, False),
    ("sdxl", SDXL_LIKE, 64, True),
])
def test_equals_diffusers_sai_control_lora(tmp_path, family, config, context, extra):
    pytest.importorskip("peft")
    from diffusers import ControlNetModel

    unet = diffusers_unet(config, seed=1)
    cn = ControlNetModel.from_unet(unet, conditioning_channels=3)  # the base: the UNet's encoder, copied
    for part in (cn.controlnet_cond_embedding, cn.controlnet_down_blocks, cn.controlnet_mid_block):
        randomize_(part, 2)
    names = diffusers_to_ldm_names(cn.state_dict())
    ldm_cn = {names[k]: v.clone() for k, v in cn.state_dict().items()}
    base = {k: v for k, v in ldm_cn.items() if k.startswith(CONTROL_LORA_PARTS)}  # the host UNet, ldm names
    lora = control_lora_state_dict(ldm_cn, rank=4, seed=3, lora_biases_as_unet=True)
    path = tmp_path / f"control-lora-canny-rank4-{family}.safetensors"
    save_file(lora, str(path))

    cn.load_lora_adapter({k: v.clone() for k, v in lora.items()}, prefix=None)  # converts the SAI layout (peft)
    cn.eval()
    model = load_control_model(path, base_unet=base)
    assert (model.kind, model.family) == ("control_lora", family)

    g = torch.Generator().manual_seed(4)
    x, t = torch.randn(2, 4, 16, 16, generator=g), torch.tensor([400.0, 400.0])
    ctx = torch.randn(2, 5, context, generator=g)
    hint = torch.rand(2, 3, 128, 128, generator=g)
    kwargs, y = {}, None
    if extra:
        text = torch.randn(2, 32, generator=g)
        time_ids = torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024], [768.0, 512, 16, 8, 768, 512]])
        kwargs = {"added_cond_kwargs": {"text_embeds": text, "time_ids": time_ids}}
        # sgm's conditioner builds y = [pooled text, sinusoidal(time ids)]; diffusers computes the same inside
        y = torch.cat([text, cn.add_time_proj(time_ids.flatten()).reshape(2, -1)], dim=-1)
    with torch.no_grad():
        down, mid = cn(x, t, ctx, controlnet_cond=hint, return_dict=False, **kwargs)
    got = model(x, hint, t, ctx, y)
    assert len(got) == len(down) + 1
    for a, b in zip(got, [*down, mid]):
        assert rel(a, b) <= 1e-5


# --- on the live ldm UNet -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sd15(tmp_path_factory):
    d = tmp_path_factory.mktemp("cl")
    unet = ldm_unet(SD_LIKE_UNET, seed=5)
    cn = controlnet_state_dict_from_unet(unet, seed=6)  # its UNet part is the UNet's
    lora = control_lora_state_dict(cn, rank=4, seed=7)
    path = d / "control-lora-depth-rank4.safetensors"
    save_file(lora, str(path))
    g = torch.Generator().manual_seed(8)
    x, t, ctx = torch.randn(2, 4, 16, 16, generator=g), torch.tensor([700.0, 700.0]), torch.randn(2, 5, 32, generator=g)
    hint = torch.rand(1, 3, 128, 128, generator=g)
    return unet, lora, path, x, t, ctx, hint


def test_equals_the_merged_controlnet_written_out_plainly(sd15, tmp_path):
    """W = W_unet + up @ down, the file's own tensors (biases included, as the reference) for the rest."""
    unet, lora, path, x, t, ctx, hint = sd15
    model = load_control_model(path, base_unet=unet.state_dict(keep_vars=True))
    merged = merged_controlnet_state_dict(lora, unet.state_dict())
    plain = load_control_model(save_state_dict(merged, tmp_path / "merged.safetensors"))
    for a, b in zip(model(x, hint, t, ctx), plain(x, hint, t, ctx)):
        assert rel(a, b) <= 1e-5
    assert model.hint_channels == lora["input_hint_block.0.weight"].shape[1]


def test_base_weights_are_shared_not_copied(sd15):
    unet, lora, path, x, t, ctx, hint = sd15
    model = load_control_model(path, base_unet=unet.state_dict(keep_vars=True))
    file_bytes = sum(v.numel() * v.element_size() for k, v in lora.items() if k != "lora_controlnet")
    assert model.parameter_bytes() == file_bytes  # nothing of the UNet among its own tensors
    unet_ptrs = {p.data_ptr() for p in unet.parameters()}
    assert not unet_ptrs & {p.data_ptr() for p in model.net.parameters()}
    # during a forward, the weights the file lacks entirely are the UNet's own storage
    seen = []
    norm = model.net.input_blocks[1][0].in_layers[0]  # a GroupNorm: its weight is in the file
    conv = model.net.input_blocks[1][0].in_layers[2]  # LoRA'd: W_unet + up @ down, made for the call
    handles = [conv.register_forward_pre_hook(lambda m, a: seen.append(("conv", m.weight.data_ptr()))),
               norm.register_forward_pre_hook(lambda m, a: seen.append(("norm", m.weight.data_ptr())))]
    try:
        model(x, hint, t, ctx)
    finally:
        for h in handles:
            h.remove()
    unet_conv = unet.input_blocks[1][0].in_layers[2].weight
    assert ("conv", unet_conv.data_ptr()) not in seen and conv.weight is None  # made per call, dropped after
    assert dict(seen)["norm"] == norm.weight.data_ptr()


def test_weights_the_file_lacks_are_the_unets_storage(sd15, tmp_path):
    unet, lora, path, x, t, ctx, hint = sd15
    partial = {k: v for k, v in lora.items() if not k.startswith("input_blocks.1.0.in_layers.0.")}  # no norm
    p = tmp_path / "control-lora-partial.safetensors"
    save_file(partial, str(p))
    model = load_control_model(p, base_unet=unet.state_dict(keep_vars=True))
    norm = model.net.input_blocks[1][0].in_layers[0]
    seen = []
    handle = norm.register_forward_pre_hook(lambda m, a: seen.append(m.weight.data_ptr()))
    try:
        model(x, hint, t, ctx)
    finally:
        handle.remove()
    assert seen == [unet.input_blocks[1][0].in_layers[0].weight.data_ptr()]  # the same storage pointer


def test_follows_the_live_unet_and_lets_a_replaced_one_go(sd15):
    unet, lora, path, x, t, ctx, hint = sd15
    other = ldm_unet(SD_LIKE_UNET, seed=5)
    model = load_control_model(path, base_unet=other.state_dict(keep_vars=True))
    before = model(x, hint, t, ctx)
    with torch.no_grad():
        other.time_embed[0].weight.mul_(1.5)  # the host changes its weights in place (A1111 loads into the model)
    after = model(x, hint, t, ctx)
    assert not torch.equal(before[-1], after[-1])  # the middle block sees the time embedding
    del other
    gc.collect()
    with pytest.raises(IncompatibleModelError, match="host UNet it was built on is gone"):
        model(x, hint, t, ctx)


def test_model_cache_rebuilds_it_when_the_checkpoint_changes(sd15):
    unet, lora, path, x, t, ctx, hint = sd15
    loads = []

    def loader(p, base_unet=None):
        loads.append(p)
        return load_control_model(p, base_unet=base_unet)

    cache = ModelCache(capacity=2, loader=loader)
    base = unet.state_dict(keep_vars=True)
    a = cache.get(path, base_unet=base, base_id="ckpt-a")
    assert cache.get(path, base_unet=base, base_id="ckpt-a") is a
    b = cache.get(path, base_unet=base, base_id="ckpt-b")
    assert b is not a and len(loads) == 2 and a.depends_on_base


def test_hook_runs_it_like_a_controlnet_and_leaves_the_unet_as_it_was(sd15, tmp_path):
    unet, lora, path, x, t, ctx, hint = sd15
    model = load_control_model(path, base_unet=unet.state_dict(keep_vars=True))
    state_before = {k: v.clone() for k, v in unet.state_dict().items()}
    hooks_before = hook_state(unet)
    with torch.no_grad():
        baseline = unet(x, t, ctx)
    unit = BoundUnit(model, hint, weight=0.9)
    with torch.no_grad(), ControlHook(unet, [unit], lambda *a: CallInfo(), family="sd1").applied():
        out = unet(x, t, ctx)
    residuals = [r * 0.9 for r in model(x, hint, t, ctx)]
    with torch.no_grad():
        assert rel(out, plain_unet(unet, x, t, ctx, residuals)) <= 1e-5
        assert not torch.allclose(out, baseline)
        assert torch.equal(unet(x, t, ctx), baseline)
    assert hook_state(unet) == hooks_before
    assert all(torch.equal(v, state_before[k]) for k, v in unet.state_dict().items())


def test_needs_a_host_unet_and_one_of_its_family(sd15, tmp_path):
    unet, lora, path, x, t, ctx, hint = sd15
    with pytest.raises(IncompatibleModelError, match="host UNet's weights"):
        load_control_model(path)
    xl_unet = ldm_unet(SDXL_LAYOUT_UNET, seed=1)  # the SDXL layout (sdkit's ldm has no SDXL label_emb: "sd2")
    xl_lora = control_lora_state_dict(controlnet_state_dict_from_unet(xl_unet, seed=2), rank=4)
    xl_path = tmp_path / "control-lora-canny-rank4-xl-layout.safetensors"
    save_file(xl_lora, str(xl_path))
    with pytest.raises(IncompatibleModelError, match="host UNet"):
        load_control_model(xl_path, base_unet=unet.state_dict(keep_vars=True))
    model = load_control_model(xl_path, base_unet=xl_unet.state_dict(keep_vars=True))
    with pytest.raises(IncompatibleModelError) as e:
        ControlHook(unet, [BoundUnit(model, hint, index=1)], family="sd1")
    assert (e.value.unit, e.value.field) == (1, "model")


def test_published_layouts_are_detected():
    """Key names and shapes of control-lora-*-rank128 (SDXL) and -rank256 (SD1.5)-style files."""
    from tests.published_shapes import SDXL_FULL, diffusers_shapes, sd15_shapes

    xl = diffusers_shapes(SDXL_FULL)
    xl = {ldm: xl[k] for k, ldm in diffusers_to_ldm_names(xl).items()}
    for shapes, family, rank in ((sd15_shapes(prefix=""), "sd1", 256), (xl, "sdxl", 128)):
        lora = {"lora_controlnet": (1,)}
        for key, shape in shapes.items():
            if key.startswith(CONTROL_LORA_PARTS) and key.endswith(".weight") and len(shape) in (2, 4):
                module = key[: -len(".weight")]
                lora[module + ".up"] = (shape[0], rank, *([1] * (len(shape) - 2)))
                lora[module + ".down"] = (rank, *shape[1:])
            else:
                lora[key] = shape
        det = detect(lora)
        assert (det.format, det.kind, det.family) == ("control-lora", "control_lora", family)
        assert det.arch.num_outputs == (13 if family == "sd1" else 10)
        assert det.variant == ("full" if family == "sdxl" else "")


# --- memory ---------------------------------------------------------------------------------------------------

MEMORY_SCRIPT = textwrap.dedent("""
    import gc, json, os, sys
    import torch
    sys.path.insert(0, sys.argv[1])
    from safetensors.torch import save_file
    from lib_controlnet import load_control_model
    from tests.tiny_kinds import CONTROL_LORA_PARTS, control_lora_state_dict
    from tests.tiny_models import controlnet_state_dict_from_unet, ldm_unet

    def rss():
        gc.collect()
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    unet = ldm_unet(json.loads(sys.argv[3]), seed=0).requires_grad_(False)
    lora = control_lora_state_dict(controlnet_state_dict_from_unet(unet, seed=1), rank=128)
    save_file(lora, sys.argv[2])
    del lora
    base = unet.state_dict(keep_vars=True)
    encoder = sum(v.numel() * v.element_size() for k, v in base.items() if k.startswith(CONTROL_LORA_PARTS))
    before = rss()
    model = load_control_model(sys.argv[2], base_unet=base)
    after = rss()
    print(json.dumps({"growth": after - before, "own": model.parameter_bytes(), "encoder": encoder}))
""")
MEMORY_UNET = dict(SD_LIKE_UNET, model_channels=128, channel_mult=(1, 2, 4, 4))


def test_rss_growth_on_load_is_at_most_the_file(tmp_path):
    path = tmp_path / "control-lora-rank128.safetensors"
    # A fixed mmap threshold: every large block is mapped fresh and unmapped when freed, so RSS shows what the
    # load allocates (glibc would otherwise hand it memory the UNet's initialisation freed).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(ROOT), str(path), json.dumps(MEMORY_UNET)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    m = json.loads(out.stdout.strip().splitlines()[-1])
    size = path.stat().st_size
    print({"file": size, **m})
    assert m["growth"] <= 1.1 * size
    assert m["growth"] >= 0.9 * m["own"]  # the measurement does see the file's tensors being read
    assert m["encoder"] > 1.1 * size  # so a copy of the UNet's weights would not fit in the budget
