"""IP-Adapter: detection by keys, image tokens and hooked cross-attention equal diffusers' implementation on
the same random weights (fp32, <= 1e-5 relative), and the hook on sdkit's ldm UNet changes exactly the
cross-attentions it should (weight 0 / outside start-end bit for bit nothing, per-layer weights on the right
layers, nothing left behind after removal).

Oracles: diffusers' `_convert_ip_adapter_image_proj_to_diffusers` + `ImageProjection`,
`IPAdapterPlusImageProjection`, `IPAdapterFullImageProjection`, `IPAdapterFaceIDImageProjection`,
`IPAdapterFaceIDPlusImageProjection`, and `Attention` with `IPAdapterAttnProcessor2_0`; the layer order is
diffusers' `attn_processors` order (which its loader numbers the file's pairs by).
"""

from __future__ import annotations

import types

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention, IPAdapterAttnProcessor2_0

from lib_controlnet import CallInfo, ControlHook, load_control_model
from lib_controlnet.errors import IncompatibleModelError, InputError
from lib_controlnet.kinds.ip_adapter_unit import IPAdapterUnit, cross_attention_layers
from lib_controlnet.models.detection import detect
from tests.ip_adapter_models import FACE, ip_adapter_state_dict, save, unet_widths
from tests.test_hook_ldm import hook_state
from tests.tiny_models import SD_LIKE_UNET, ldm_unet

SD_CROSS = SD_LIKE_UNET["context_dim"]  # 32


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def diffusers_projection(state):
    proj = {k[len("image_proj."):]: v for k, v in state.items() if k.startswith("image_proj.")}
    dummy = types.SimpleNamespace(device="cpu", dtype=torch.float32)
    return UNet2DConditionModel._convert_ip_adapter_image_proj_to_diffusers(dummy, proj, low_cpu_mem_usage=False)


@pytest.fixture(scope="module")
def sd_unet():
    return ldm_unet(SD_LIKE_UNET, seed=3)


def clip_inputs(seed=0, embeds=24, hidden=32, n=17):
    g = torch.Generator().manual_seed(seed)
    return {"image_embeds": torch.randn(1, embeds, generator=g),
            "penultimate_hidden_state": torch.randn(1, n, hidden, generator=g),
            "uncond_penultimate_hidden_state": torch.randn(1, n, hidden, generator=g),
            "face_embed": torch.randn(1, FACE, generator=g)}


# --- detection --------------------------------------------------------------------------------------------
CASES = {  # variant -> (state kwargs, arch projection, tokens)
    "base": (dict(variant="base", clip=24), "linear", 4),
    "light-16": (dict(variant="base", clip=24, tokens=16), "linear", 16),
    "plus": (dict(variant="plus", clip=32, tokens=16), "resampler", 16),
    "full": (dict(variant="full", clip=32), "mlp", 0),
    "faceid": (dict(variant="faceid"), "faceid", 4),
    "portrait": (dict(variant="faceid", tokens=16), "faceid", 16),
    "faceid_plus": (dict(variant="faceid_plus", clip=32, cross=64), "faceid_plus", 4),
    "instant_id": (dict(variant="instant_id", tokens=16), "resampler", 16),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("suffix", [".safetensors", ".bin"])
def test_files_are_recognised_by_their_keys(case, suffix, tmp_path, sd_unet):
    kwargs, projection, tokens = CASES[case]
    kwargs = {"cross": SD_CROSS, **kwargs}
    widths = unet_widths(sd_unet)
    path = save(ip_adapter_state_dict(inner=widths, **kwargs), tmp_path / f"ip-adapter-test{suffix}")
    model = load_control_model(path)
    assert (model.kind, model.family, model.arch.projection, model.arch.tokens) == ("ip_adapter", "sd1", projection,
                                                                                     tokens)
    assert model.arch.inner_dims == tuple(widths)


def test_family_follows_the_context_width_or_the_layer_count():
    shapes = {k: tuple(v.shape) for k, v in ip_adapter_state_dict("base", cross=2048, inner=64, clip=8).items()}
    assert detect(shapes).family == "sdxl"
    state = ip_adapter_state_dict("base", cross=64, inner=64, clip=8, layers=70)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert detect(shapes).family == "sdxl"
    shapes = {k: tuple(v.shape) for k, v in ip_adapter_state_dict("base", cross=768, inner=64, clip=8).items()}
    assert detect(shapes).family == "sd1"


def test_pulid_files_are_recognised_by_their_keys_as_sdxl():
    """PuLID's ID encoder keys (its network and attention: tests/test_pulid.py), SDXL whatever the widths."""
    from tests.pulid_models import pulid_state_dict

    found = detect({k: tuple(v.shape) for k, v in pulid_state_dict(inner=[64] * 16, context=32).items()})
    assert (found.family, found.arch.projection, found.arch.tokens) == ("sdxl", "pulid", 10)


# --- image tokens: parity with diffusers --------------------------------------------------------------------
PARITY = {  # name -> (state kwargs, family-like label)
    "base-sd15": dict(variant="base", cross=SD_CROSS, clip=24),
    "base-sdxl": dict(variant="base", cross=128, clip=40),
    "plus-sd15": dict(variant="plus", cross=SD_CROSS, clip=32, tokens=16, dim=64, heads=1),
    "plus-sdxl": dict(variant="plus", cross=128, clip=48, tokens=16, dim=128, heads=2),
    "full-sd15": dict(variant="full", cross=SD_CROSS, clip=32),
    "faceid-sd15": dict(variant="faceid", cross=SD_CROSS),
    "portrait-sdxl": dict(variant="faceid", cross=128, tokens=16),
    "faceid_plus-sd15": dict(variant="faceid_plus", cross=64, clip=32),
    "faceid_plus-sdxl": dict(variant="faceid_plus", cross=128, clip=48),
    "instant_id-sdxl": dict(variant="instant_id", cross=128, tokens=16, dim=128, heads=2),
}


@pytest.mark.parametrize("name", list(PARITY))
@pytest.mark.parametrize("v2", [False, True])
def test_image_tokens_equal_diffusers(name, v2, tmp_path):
    kwargs = PARITY[name]
    if v2 and kwargs["variant"] != "faceid_plus":
        pytest.skip("only FaceID plus has a v2")
    state = ip_adapter_state_dict(inner=64, seed=1, **kwargs)
    stem = "ip-adapter-faceid-plusv2_sd15" if v2 else "ip-adapter-test"
    model = load_control_model(save(state, tmp_path / f"{stem}.safetensors"))
    oracle = diffusers_projection(state).eval()
    clip = kwargs.get("clip", 24)
    inputs = clip_inputs(2, embeds=clip, hidden=clip)
    cond, uncond = model.tokens(inputs)
    with torch.no_grad():
        variant = kwargs["variant"]
        if variant == "base":
            expected = oracle(inputs["image_embeds"]), oracle(torch.zeros(1, clip))
        elif variant in ("plus", "full"):
            expected = oracle(inputs["penultimate_hidden_state"]), oracle(inputs["uncond_penultimate_hidden_state"])
        elif variant == "faceid":
            expected = oracle(inputs["face_embed"]), oracle(torch.zeros(1, FACE))
        elif variant == "instant_id":
            face = inputs["face_embed"].reshape(1, 1, FACE)
            expected = oracle(face), oracle(torch.zeros_like(face))
        else:  # faceid_plus: diffusers reads the CLIP hidden states from an attribute, v2 from `shortcut`
            oracle.shortcut = v2
            oracle.clip_embeds = inputs["penultimate_hidden_state"][:, None]
            c = oracle(inputs["face_embed"])
            oracle.clip_embeds = inputs["uncond_penultimate_hidden_state"][:, None]
            expected = c, oracle(torch.zeros(1, FACE))
    assert cond.shape == expected[0].shape and uncond.shape == expected[1].shape
    assert rel(cond, expected[0]) <= 1e-5 and rel(uncond, expected[1]) <= 1e-5
    assert rel(cond, uncond) > 1e-2  # the uncond tokens are not the cond ones


def test_a_clip_embedding_of_the_wrong_encoder_is_named(tmp_path):
    state = ip_adapter_state_dict("base", cross=SD_CROSS, inner=64, clip=24)
    model = load_control_model(save(state, tmp_path / "ip-adapter_sd15.safetensors"))
    with pytest.raises(IncompatibleModelError, match="24 values"):
        model.tokens({"image_embeds": torch.zeros(1, 40)})


# --- the hooked cross-attention: parity with IPAdapterAttnProcessor2_0 -------------------------------------
def run_unet(unet, units, x, t, ctx, rows=(0,), fraction=0.5, record=None):
    hook = ControlHook(unet, units, call_info=lambda *a: CallInfo(cond_rows=rows, fraction=fraction))
    handles = []
    if record is not None:
        for layer in cross_attention_layers(unet):
            handles.append(layer.attn.register_forward_hook(
                lambda m, a, k, o, n=layer.number: record.__setitem__(n, (a[0], k.get("context"), o)),
                with_kwargs=True))
    try:
        with hook.applied(), torch.no_grad():
            return unet(x, t, ctx)
    finally:
        for h in handles:
            h.remove()


def diffusers_attention(attn2, model, layer, weight):
    """diffusers' Attention with IPAdapterAttnProcessor2_0 holding attn2's and the file's weights."""
    inner, query_dim = attn2.to_q.out_features, attn2.to_q.in_features
    oracle = Attention(query_dim, cross_attention_dim=attn2.to_k.in_features, heads=attn2.heads,
                       dim_head=inner // attn2.heads, bias=False, out_bias=True)
    oracle.load_state_dict({"to_q.weight": attn2.to_q.weight, "to_k.weight": attn2.to_k.weight,
                            "to_v.weight": attn2.to_v.weight, "to_out.0.weight": attn2.to_out[0].weight,
                            "to_out.0.bias": attn2.to_out[0].bias})
    processor = IPAdapterAttnProcessor2_0(inner, model.arch.cross_dim, num_tokens=(model.arch.tokens,), scale=weight)
    processor.load_state_dict({"to_k_ip.0.weight": model.net.ip_layers.to_k[layer].weight,
                               "to_v_ip.0.weight": model.net.ip_layers.to_v[layer].weight})
    oracle.set_processor(processor)
    return oracle.eval()


def make_unit(model, inputs, **options):
    cond, uncond = model.tokens(inputs)
    return IPAdapterUnit(model, cond, uncond, **options)


def test_hooked_cross_attention_equals_diffusers_ip_adapter_processor(sd_unet, tmp_path):
    state = ip_adapter_state_dict("plus", cross=SD_CROSS, inner=unet_widths(sd_unet), clip=32, tokens=16, seed=4)
    model = load_control_model(save(state, tmp_path / "ip-adapter-plus_sd15.safetensors"))
    inputs = clip_inputs(5, hidden=32)
    unit = make_unit(model, inputs, weight=0.7)
    g = torch.Generator().manual_seed(8)
    x, ctx = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 5, SD_CROSS, generator=g)
    t = torch.tensor([500.0, 500.0])
    record = {}
    run_unet(sd_unet, [unit], x, t, ctx, rows=(0,), record=record)  # row 0 cond, row 1 uncond
    assert len(record) == 16
    for n in (0, 6, 15):  # an input block's, an output block's, the middle block's
        hidden, context, out = record[n]
        oracle = diffusers_attention(cross_attention_layers(sd_unet)[n].attn, model, n, 0.7)
        ip = torch.cat([unit.cond, unit.uncond])  # per row: cond tokens, uncond tokens
        with torch.no_grad():
            expected = oracle(hidden, encoder_hidden_states=(context, [ip]))
        assert rel(out, expected) <= 1e-5, n


# --- the hook on sdkit's ldm UNet -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sd_setup(sd_unet, tmp_path_factory):
    state = ip_adapter_state_dict("base", cross=SD_CROSS, inner=unet_widths(sd_unet), clip=24, seed=9)
    model = load_control_model(save(state, tmp_path_factory.mktemp("ip") / "ip-adapter_sd15.safetensors"))
    g = torch.Generator().manual_seed(10)
    x, ctx = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 5, SD_CROSS, generator=g)
    return model, x, torch.tensor([700.0, 700.0]), ctx


_PLAIN = {}


def plain(unet, x, t, ctx):
    key = (id(unet), id(x))
    if key not in _PLAIN:
        with torch.no_grad():
            _PLAIN[key] = unet(x, t, ctx)
    return _PLAIN[key]


def changed_modules(unet, units, x, t, ctx, **kw):
    """Which attention/ff modules computed something other than their plain function in a hooked run."""
    blocks = [m for m in unet.modules() if hasattr(m, "attn1") and hasattr(m, "attn2")]
    seen = {}
    handles = [getattr(b, part).register_forward_hook(
        lambda m, a, k, o, key=(i, part): seen.__setitem__(key, (a, k, o)), with_kwargs=True)
        for i, b in enumerate(blocks) for part in ("attn1", "attn2", "ff")]
    try:
        run_unet(unet, units, x, t, ctx, **kw)
    finally:
        for h in handles:
            h.remove()
    changed = set()
    with torch.no_grad():
        for (i, part), (a, k, o) in seen.items():
            if not torch.equal(getattr(blocks[i], part)(*a, **k), o):
                changed.add((i, part))
    return changed, blocks


def test_only_cross_attention_outputs_change(sd_unet, sd_setup):
    model, x, t, ctx = sd_setup
    unit = make_unit(model, clip_inputs(1))
    changed, blocks = changed_modules(sd_unet, [unit], x, t, ctx)
    assert changed == {(i, "attn2") for i in range(len(blocks))}
    assert not torch.equal(run_unet(sd_unet, [unit], x, t, ctx), plain(sd_unet, x, t, ctx))


@pytest.mark.parametrize("options, fraction", [(dict(weight=0.0), 0.5), (dict(guidance_start=0.6), 0.5),
                                               (dict(guidance_end=0.4), 0.5),
                                               (dict(advanced_weighting=[0.0] * 16), 0.5)])
def test_weight_zero_or_outside_start_end_is_bit_for_bit_no_unit(sd_unet, sd_setup, options, fraction):
    model, x, t, ctx = sd_setup
    unit = make_unit(model, clip_inputs(1), **options)
    assert torch.equal(run_unet(sd_unet, [unit], x, t, ctx, fraction=fraction), plain(sd_unet, x, t, ctx))


def test_window_edges_follow_the_reference(sd_unet, sd_setup):
    model, x, t, ctx = sd_setup
    unit = make_unit(model, clip_inputs(1), guidance_start=0.5, guidance_end=0.5)
    assert not torch.equal(run_unet(sd_unet, [unit], x, t, ctx, fraction=0.5), plain(sd_unet, x, t, ctx))


# SD1.x slots in UNet call order: input blocks 1, 2, 4, 5, 7, 8 -> 0-5, the middle block -> 6,
# output blocks 3-11 -> 7-15
SLOT_BLOCKS = {0: ("input_blocks", 1), 5: ("input_blocks", 8), 6: ("middle_block", None), 7: ("output_blocks", 3),
               15: ("output_blocks", 11)}


@pytest.mark.parametrize("slot", list(SLOT_BLOCKS))
def test_per_layer_weights_hit_their_layer(sd_unet, sd_setup, slot):
    model, x, t, ctx = sd_setup
    weights = [0.0] * 16
    weights[slot] = 1.0
    unit = make_unit(model, clip_inputs(1), advanced_weighting=weights)
    changed, blocks = changed_modules(sd_unet, [unit], x, t, ctx)
    name, index = SLOT_BLOCKS[slot]
    container = getattr(sd_unet, name) if index is None else getattr(sd_unet, name)[index]
    expected = {(i, "attn2") for i, b in enumerate(blocks) if any(b is m for m in container.modules())}
    assert changed == expected and len(expected) == 1


def test_advanced_weighting_of_another_length_names_the_field(sd_setup):
    model = sd_setup[0]
    with pytest.raises(InputError, match="16 values") as info:
        make_unit(model, clip_inputs(1), advanced_weighting=[1.0] * 13)
    assert info.value.field == "advanced_weighting"


def test_uncond_rows_get_the_uncond_tokens(sd_unet, sd_setup):
    """A batch of [cond, uncond] rows: the uncond row equals a run where every row is uncond (zero image)."""
    model, x, t, ctx = sd_setup
    unit = make_unit(model, clip_inputs(1))
    mixed = run_unet(sd_unet, [unit], x, t, ctx, rows=(0,))
    all_uncond = run_unet(sd_unet, [unit], x, t, ctx, rows=())
    all_cond = run_unet(sd_unet, [unit], x, t, ctx, rows=None)
    assert torch.allclose(mixed[1], all_uncond[1], atol=1e-6) and torch.allclose(mixed[0], all_cond[0], atol=1e-6)
    assert not torch.allclose(mixed[0], mixed[1])


def test_two_units_add_up(sd_unet, sd_setup):
    model, x, t, ctx = sd_setup
    a, b = make_unit(model, clip_inputs(1)), make_unit(model, clip_inputs(2), weight=0.5)
    base = plain(sd_unet, x, t, ctx)
    both = run_unet(sd_unet, [a, b], x, t, ctx)
    assert not torch.allclose(both, run_unet(sd_unet, [a], x, t, ctx)) and not torch.allclose(both, base)
    # per layer the added attentions sum: the same result in either unit order
    assert torch.allclose(both, run_unet(sd_unet, [b, a], x, t, ctx), atol=1e-6)


def test_region_mask_limits_the_added_attention(sd_unet, sd_setup):
    model, x, t, ctx = sd_setup
    unit_zero = make_unit(model, clip_inputs(1), effective_region_mask=torch.zeros(64, 64))
    assert torch.allclose(run_unet(sd_unet, [unit_zero], x, t, ctx), plain(sd_unet, x, t, ctx), atol=1e-6)
    half = torch.zeros(64, 64)
    half[:, :32] = 1  # left half: the added attention there only, at every layer's resolution
    record = {}
    run_unet(sd_unet, [make_unit(model, clip_inputs(1), effective_region_mask=half)], x, t, ctx, record=record)
    for n in (0, 3):  # 8x8 and 4x4 positions
        hidden, context, out = record[n]
        attn = cross_attention_layers(sd_unet)[n].attn
        with torch.no_grad():
            base = attn(hidden, context=context)
        side = int(hidden.shape[1] ** 0.5)
        delta = (out - base).reshape(2, side, side, -1).abs().amax(dim=(0, 3))
        assert delta[:, side // 2:].max() < 1e-6 < delta[:, : side // 2].min()


def test_removal_leaves_every_module_as_before(sd_unet, sd_setup):
    model, x, t, ctx = sd_setup
    before = hook_state(sd_unet)
    run_unet(sd_unet, [make_unit(model, clip_inputs(1))], x, t, ctx)
    assert hook_state(sd_unet) == before
    with torch.no_grad():
        assert torch.equal(sd_unet(x, t, ctx), plain(sd_unet, x, t, ctx))


def test_a_file_for_another_unet_is_refused_naming_the_model(sd_unet, tmp_path):
    state = ip_adapter_state_dict("base", cross=SD_CROSS, inner=64, clip=24, layers=15)
    model = load_control_model(save(state, tmp_path / "ip-adapter_sd15.safetensors"))
    unit = make_unit(model, clip_inputs(1, embeds=24))
    with pytest.raises(IncompatibleModelError, match="15 cross-attention") as info:
        ControlHook(sd_unet, [unit])
    assert info.value.field == "model"


def test_layer_order_is_diffusers_processor_order(sd_unet):
    """diffusers numbers a file's pairs by `attn_processors` order; map its names onto the ldm blocks."""
    config = dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=2,
                  block_out_channels=(32, 64, 64, 64),
                  down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                  up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=SD_CROSS,
                  attention_head_dim=8, norm_num_groups=32)
    names = [n for n in UNet2DConditionModel(**config).attn_processors if n.endswith("attn2.processor")]

    def ldm_block(name):
        parts = name.split(".")
        if parts[0] == "mid_block":
            return sd_unet.middle_block
        i, j = int(parts[1]), int(parts[3])
        return sd_unet.input_blocks[3 * i + j + 1] if parts[0] == "down_blocks" else sd_unet.output_blocks[3 * i + j]

    expected = [next(m.attn2 for m in ldm_block(n).modules() if hasattr(m, "attn2")) for n in names]
    assert [layer.attn for layer in cross_attention_layers(sd_unet)] == expected


# --- FaceID's LoRA -----------------------------------------------------------------------------------------
HAS_IT, OTHER, NONE = {"ip-adapter-faceid_sd15_lora"}, {"other"}, set()


@pytest.mark.parametrize("prompt, available, says", [
    ("a photo", None, "which the prompt does not load"),
    ("a photo <lora:ip-adapter-faceid_sd15_lora:0.6>", None, None),
    ("a photo <lora:ip-adapter-faceid_sd15_lora>", None, None),  # A1111's syntax without a weight
    ("a photo <lora:ip-adapter-faceid_sd15_lora_v2:0.6>", None, "which the prompt does not load"),  # another LoRA
    ("a photo <lora:ip-adapter-faceid_sd15_lora:0.6>", HAS_IT, None),
    ("a photo <lora:ip-adapter-faceid_sd15_lora:0.6>", OTHER, "the prompt loads it but this host has no LoRA of "
                                                              "that name"),
    ("a photo", NONE, "this host has no LoRA of that name"),
    ("a photo", HAS_IT, "which the prompt does not load"),
])
def test_faceid_lora_note(prompt, available, says):
    from lib_controlnet.kinds.ip_adapter_presets import lora_note

    note = lora_note("ip-adapter-faceid_sd15 [0123abcd]", prompt, None if available is None else available.__contains__)
    assert (note is None) == (says is None)
    if says:
        assert says in note and "ip-adapter-faceid_sd15_lora" in note and "h94/IP-Adapter-FaceID" in note
    assert lora_note("ip-adapter-faceid-portrait_sd15", "a photo", NONE.__contains__) is None  # published without one
    assert lora_note("ip-adapter-plus_sd15", "a photo", NONE.__contains__) is None


def test_a1111_lora_lookup_reads_the_lora_extensions_lists_and_refreshes_once():
    """A1111's extensions-builtin/Lora/networks.py keeps `available_networks` (by name) and
    `available_network_aliases`, and refreshes a name it has not listed with `update_available_networks_by_names`."""
    from lib_controlnet.kinds.ip_adapter_presets import a1111_lora_lookup

    asked = []
    networks = types.SimpleNamespace(available_networks={"a": 1}, available_network_aliases={"a": 1, "alias_b": 2})

    def refresh(names):
        asked.append(list(names))
        if names == ["new"]:
            networks.available_networks["new"] = 3

    networks.update_available_networks_by_names = refresh
    has_lora = a1111_lora_lookup(networks)
    assert has_lora("a") and has_lora("alias_b") and asked == []
    assert has_lora("new") and asked == [["new"]]  # a file added since start-up
    assert not has_lora("missing") and asked == [["new"], ["missing"]]
    assert a1111_lora_lookup(None) is None and a1111_lora_lookup(types.SimpleNamespace()) is None
    networks.update_available_networks_by_names = lambda names: 1 / 0  # its own scan failing
    assert not has_lora("other")
