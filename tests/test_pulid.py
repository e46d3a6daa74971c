"""The PuLID IP-Adapter (ip-adapter_pulid_sdxl_fp16.safetensors): detection by keys, its ID encoder, and its
attention through the IP-Adapter's attn2 hooks on sdkit's SDXL-layout UNet.

- Layout: `image_proj.*` hashes to the digest of ToTheBeginning/PuLID's IDEncoder (pulid/encoders.py, its
  key:shape lines with the `image_proj.` prefix, 110 keys, 54.9 M values), and `ip_adapter.{2n+1}` has one
  pair per attn2 of diffusers' SDXL UNet in `attn_processors` order, 2048 -> that layer's width, as upstream's
  `hack_unet_attn_layers` makes them: 250 keys in all.
- Tokens: equal to the IDEncoder written out plainly from the state dict (F.linear / layer_norm / leaky_relu);
  uncond from zeros. During development, against the upstream IDEncoder at the published widths on the same
  random weights: identical (0.0).
- Attention: every hooked attn2 output equals the attention written out plainly from the recorded inputs
  (text attention, ID attention over the ID tokens plus 8 / 16 zero tokens, PuLID's orthogonalisations), for
  both modes, cond and uncond rows. During development, against upstream's IDAttnProcessor2_0 in diffusers'
  Attention with the same weights: identical (0.0) for Fidelity and Extremely style.
- Hook behaviour: only attn2 outputs change, weight 0 is bit for bit no unit, removal exact; SDXL only.
"""

from __future__ import annotations

import hashlib
import math

import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel

from lib_controlnet import CallInfo, ControlHook, load_control_model
from lib_controlnet.enums import PuLIDMode
from lib_controlnet.errors import IncompatibleModelError, InputError
from lib_controlnet.kinds.ip_adapter_unit import IPAdapterUnit, cross_attention_layers
from lib_controlnet.models.detection import detect
from lib_controlnet.models.networks.ip_adapter import IPAdapterNet
from tests.ip_adapter_models import save, unet_widths
from tests.pulid_models import PUBLISHED_PROJ, projection_shapes, pulid_inputs, pulid_state_dict
from tests.test_hook_ldm import hook_state
from tests.tiny_models import SDXL_ADM, sdxl_like_unet

IDENCODER = ("d0fe6decee6e694ade340de7e9432829dc8988c38c2d7ab61805810b3ae89104", 110, 54_886_400)
SDXL_UNET = dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280), cross_attention_dim=2048,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), use_linear_projection=True,
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816)
NAME = "ip-adapter_pulid_sdxl_fp16"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: a second thread only adds hand-offs
    yield
    torch.set_num_threads(before)


def layout_digest(state) -> tuple[str, int, int]:
    """sha256 of the sorted "key:shape" lines, key count, value count (as tests/annotators_nn does)."""
    lines = sorted(f"{k}:{','.join(str(d) for d in v.shape)}" for k, v in state.items())
    return (hashlib.sha256("\n".join(lines).encode()).hexdigest(), len(lines),
            sum(math.prod(v.shape) for v in state.values()))


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def published_attn2_widths() -> list[int]:
    """upstream's id_to_k output width (the layer's hidden size) per attn2 of diffusers' SDXL UNet, in
    `attn_processors` order."""
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SDXL_UNET)
    widths = []
    for name in unet.attn_processors:
        if not name.endswith("attn2.processor"):
            continue
        channels = unet.config.block_out_channels
        if name.startswith("mid_block"):
            widths.append(channels[-1])
        elif name.startswith("up_blocks"):
            widths.append(list(reversed(channels))[int(name[len("up_blocks.")])])
        else:
            widths.append(channels[int(name[len("down_blocks.")])])
    return widths


def test_the_published_layout_is_pulids():
    widths = published_attn2_widths()
    assert len(widths) == 70
    shapes = projection_shapes(**PUBLISHED_PROJ)
    for n, width in enumerate(widths):
        for part in ("to_k_ip", "to_v_ip"):
            shapes[f"ip_adapter.{2 * n + 1}.{part}.weight"] = (width, 2048)
    found = detect(shapes)
    assert (found.kind, found.family, found.arch.projection, found.arch.tokens) == ("ip_adapter", "sdxl", "pulid", 10)
    with torch.device("meta"):
        net = IPAdapterNet(found.arch)
    ours = {f"image_proj.{k}": v for k, v in net.image_proj.state_dict().items()}
    assert layout_digest(ours) == IDENCODER
    for i, (k, v) in enumerate(zip(net.ip_layers.to_k, net.ip_layers.to_v)):
        ours[f"ip_adapter.{2 * i + 1}.to_k_ip.weight"] = k.weight
        ours[f"ip_adapter.{2 * i + 1}.to_v_ip.weight"] = v.weight
    assert {k: tuple(v.shape) for k, v in ours.items()} == shapes and len(shapes) == 250


def plain_id_encoder(state: dict, id_cond: torch.Tensor, hidden: list[torch.Tensor]) -> torch.Tensor:
    def mlp(prefix: str, x: torch.Tensor) -> torch.Tensor:
        for i in (0, 3):
            x = F.linear(x, state[f"{prefix}.{i}.weight"], state[f"{prefix}.{i}.bias"])
            x = F.layer_norm(x, x.shape[-1:], state[f"{prefix}.{i + 1}.weight"], state[f"{prefix}.{i + 1}.bias"])
            x = F.leaky_relu(x, 0.01)
        return F.linear(x, state[f"{prefix}.6.weight"], state[f"{prefix}.6.bias"])

    width = state["image_proj.mapping_0.6.weight"].shape[0]
    tokens = [mlp("image_proj.body", id_cond).reshape(id_cond.shape[0], -1, width)]
    for i, h in enumerate(hidden):
        tokens.append(mlp(f"image_proj.mapping_{i}", h[:, :1])
                      + mlp(f"image_proj.mapping_patch_{i}", h[:, 1:]).mean(dim=1, keepdim=True))
    return torch.cat(tokens, dim=1)


@pytest.fixture(scope="module")
def xl():
    unet = sdxl_like_unet(seed=61)
    g = torch.Generator().manual_seed(62)
    return unet, dict(x=torch.randn(2, 4, 8, 8, generator=g), t=torch.tensor([600.0, 600.0]),
                      ctx=torch.randn(2, 3, 64, generator=g), y=torch.randn(2, SDXL_ADM, generator=g))


@pytest.fixture(scope="module")
def pulid(xl, tmp_path_factory):
    unet, _ = xl
    state = pulid_state_dict(inner=unet_widths(unet), context=64, seed=63)
    return load_control_model(save(state, tmp_path_factory.mktemp("pulid") / f"{NAME}.safetensors")), state


def test_detected_by_keys_and_its_tokens_are_the_id_encoders(pulid):
    model, state = pulid
    assert (model.kind, model.family, model.variant, model.arch.tokens) == ("ip_adapter", "sdxl", "pulid", 10)
    inputs = pulid_inputs(seed=64)
    cond, uncond = model.tokens(inputs)
    id_cond = torch.cat([inputs["id_ante_embedding"], inputs["id_cond_vit"]], dim=-1)
    hidden = list(inputs["id_vit_hidden"])
    assert cond.shape == (1, 10, 64)
    assert rel(cond, plain_id_encoder(state, id_cond, hidden)) <= 1e-6
    zeros = plain_id_encoder(state, torch.zeros_like(id_cond), [torch.zeros_like(h) for h in hidden])
    assert rel(uncond, zeros) <= 1e-6
    # the hidden states of one image may come as [5, tokens, width] too
    again, _ = model.tokens({**inputs, "id_vit_hidden": inputs["id_vit_hidden"][:, 0]})
    assert torch.equal(again, cond)


def test_missing_or_misfitting_inputs_name_the_module(pulid):
    model, _ = pulid
    with pytest.raises(InputError, match="ip-adapter_pulid") as info:
        model.tokens({"face_embed": torch.zeros(1, 512)})
    assert info.value.field == "module"
    with pytest.raises(IncompatibleModelError, match="5 EVA-CLIP hidden states of 64"):
        model.tokens({**pulid_inputs(), "id_vit_hidden": torch.zeros(4, 1, 5, 64)})
    with pytest.raises(IncompatibleModelError, match="32 values"):
        model.tokens({**pulid_inputs(), "id_cond_vit": torch.zeros(1, 48)})


def run(unet, d, units, rows=(0,), fraction=0.5, record=None):
    hook = ControlHook(unet, units, call_info=lambda *a: CallInfo(cond_rows=rows, fraction=fraction))
    handles = []
    if record is not None:
        for layer in cross_attention_layers(unet):
            handles.append(layer.attn.register_forward_hook(
                lambda m, a, k, o, n=layer.number: record.__setitem__(n, (a[0], k.get("context"), o)),
                with_kwargs=True))
    try:
        with hook.applied(), torch.no_grad():
            return unet(d["x"], d["t"], d["ctx"], y=d["y"])
    finally:
        for h in handles:
            h.remove()


def plain_pulid_attention(attn, x, context, id_tokens, mode: PuLIDMode, weight: float, k_ip, v_ip):
    """attn2's output with PuLID's ID attention, written out per head with explicit softmaxes (upstream's
    IDAttnProcessor2_0 with NUM_ZERO / ORTHO / ORTHO_v2 set as the reference's two settings)."""
    zeros = {PuLIDMode.FIDELITY: 8, PuLIDMode.STYLE: 16}[mode]
    heads = attn.heads
    q, k, v = attn.to_q(x), attn.to_k(context), attn.to_v(context)
    tokens = torch.cat([id_tokens, torch.zeros(id_tokens.shape[0], zeros, id_tokens.shape[-1])], dim=1)
    ik, iv = F.linear(tokens, k_ip), F.linear(tokens, v_ip)
    b, n, inner = q.shape
    d = inner // heads

    def split(t):
        return t.reshape(b, -1, heads, d).permute(0, 2, 1, 3)

    def attend(q_, k_, v_):
        return (torch.softmax(q_ @ k_.transpose(-1, -2) / math.sqrt(d), dim=-1) @ v_).permute(0, 2, 1, 3).reshape(
            b, n, inner)

    text = attend(split(q), split(k), split(v))
    ident = attend(split(q), split(ik), split(iv))
    projection = (text * ident).sum(dim=1, keepdim=True) / (text * text).sum(dim=1, keepdim=True) * text
    if mode is PuLIDMode.STYLE:
        added = ident - projection
    else:
        share = torch.softmax(split(q) @ split(ik).transpose(-1, -2), dim=-1).mean(dim=1)[:, :, :5].sum(-1, True)
        added = ident + (share - 1) * projection
    return attn.to_out[0](text + weight * added)


@pytest.mark.parametrize("mode", list(PuLIDMode))
def test_hooked_attention_is_pulids(xl, pulid, mode):
    unet, d = xl
    model, _ = pulid
    cond, uncond = model.tokens(pulid_inputs(seed=65))
    unit = IPAdapterUnit(model, cond, uncond, weight=0.7, pulid_mode=mode)
    record = {}
    run(unet, d, [unit], rows=(0,), record=record)  # row 0 cond, row 1 uncond
    assert len(record) == 11
    for n in (0, 4, 10):
        hidden, context, out = record[n]
        attn = cross_attention_layers(unet)[n].attn
        with torch.no_grad():
            expected = plain_pulid_attention(attn, hidden, context, torch.cat([cond, uncond]), mode, 0.7,
                                             model.net.ip_layers.to_k[n].weight, model.net.ip_layers.to_v[n].weight)
            plain = attn(hidden, context=context)
        assert rel(out, expected) <= 1e-5, n
        assert rel(out, plain) > 1e-3


def test_the_two_modes_differ_weight_zero_is_no_unit_and_removal_is_exact(xl, pulid):
    unet, d = xl
    model, _ = pulid
    cond, uncond = model.tokens(pulid_inputs(seed=66))
    before = hook_state(unet)
    with torch.no_grad():
        plain = unet(d["x"], d["t"], d["ctx"], y=d["y"])
    fidelity = run(unet, d, [IPAdapterUnit(model, cond, uncond)])
    style = run(unet, d, [IPAdapterUnit(model, cond, uncond, pulid_mode="Extremely style")])
    assert not torch.allclose(fidelity, plain) and not torch.allclose(style, plain)
    assert not torch.allclose(fidelity, style)
    assert torch.equal(run(unet, d, [IPAdapterUnit(model, cond, uncond, weight=0.0)]), plain)
    assert torch.equal(run(unet, d, [IPAdapterUnit(model, cond, uncond, guidance_start=0.6)], fraction=0.5), plain)
    assert hook_state(unet) == before


def test_only_the_cross_attentions_change(xl, pulid):
    unet, d = xl
    model, _ = pulid
    cond, uncond = model.tokens(pulid_inputs(seed=67))
    blocks = [m for m in unet.modules() if hasattr(m, "attn1") and hasattr(m, "attn2")]
    seen = {}
    handles = [getattr(b, part).register_forward_hook(
        lambda m, a, k, o, key=(i, part): seen.__setitem__(key, (a, k, o)), with_kwargs=True)
        for i, b in enumerate(blocks) for part in ("attn1", "attn2", "ff")]
    try:
        run(unet, d, [IPAdapterUnit(model, cond, uncond)])
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        changed = {key for key, (a, k, o) in seen.items()
                   if not torch.equal(getattr(blocks[key[0]], key[1])(*a, **k), o)}
    assert changed == {(i, "attn2") for i in range(len(blocks))}


def test_sdxl_only(xl, pulid):
    unet, _ = xl
    model, _ = pulid
    cond, uncond = model.tokens(pulid_inputs(seed=68))
    with pytest.raises(IncompatibleModelError, match="sdxl IP-Adapter but the checkpoint is sd1") as info:
        ControlHook(unet, [IPAdapterUnit(model, cond, uncond)], family="sd1")
    assert info.value.field == "model"
    with pytest.raises(InputError) as info:
        IPAdapterUnit(model, cond, uncond, pulid_mode="Strong")
    assert info.value.field == "pulid_mode"
