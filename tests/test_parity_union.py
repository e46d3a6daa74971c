"""ControlNet Union / ProMax equals diffusers' ControlNetUnionModel on the same random weights (fp32, <= 1e-5).

One tiny SDXL-like union model (random weights, every zero-init redrawn) is saved as a diffusers folder, as
xinsir's single file (the same diffusers key names, no config), and through our converter in the original
(ldm) layout with the `control_model.` prefix, once more with ComfyUI's `attn.in_proj.` spelling. One hint
and two hints in one call (diffusers' multi-condition path, per-hint conditioning scales) must reproduce
`down_block_res_samples` + `mid_block_res_sample`.
"""

import pytest
import torch
from safetensors.torch import save_file

from lib_controlnet import load_control_model
from lib_controlnet.errors import InputError
from lib_controlnet.models.conversion.union import is_union_key
from lib_controlnet.models.detection import detect
from tests.published_shapes import XINSIR_UNION, diffusers_union_shapes
from tests.tiny_models import diffusers_union, ldm_state_dict_from_diffusers, union_config

pytest.importorskip("diffusers")

SLOTS = 8  # ProMax
BATCH = 2


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


@pytest.fixture(scope="module")
def union(tmp_path_factory):
    d = tmp_path_factory.mktemp("union")
    model = diffusers_union(union_config(SLOTS), seed=21)
    model.save_pretrained(d / "diffusers", safe_serialization=True)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(d / "xinsir_single.safetensors"))
    base = {k: v for k, v in sd.items() if not is_union_key(k)}
    ldm = {**ldm_state_dict_from_diffusers_dict(base), **{"control_model." + k: v for k, v in sd.items()
                                                          if is_union_key(k)}}
    save_file(ldm, str(d / "union_ldm.safetensors"))
    comfy = {k.replace(".attn.in_proj_", ".attn.in_proj."): v for k, v in ldm.items()}
    save_file(comfy, str(d / "union_ldm_comfy.safetensors"))

    g = torch.Generator().manual_seed(5)
    x = torch.randn(BATCH, 4, 8, 8, generator=g)
    t = torch.tensor([999.0, 321.0])
    context = torch.randn(BATCH, 7, 64, generator=g)
    text_embeds = torch.randn(BATCH, 32, generator=g)
    time_ids = torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024], [768.0, 512, 16, 8, 768, 512]])
    # sgm's conditioner builds y = [pooled text, sinusoidal(time ids)]; diffusers computes the same inside
    y = torch.cat([text_embeds, model.add_time_proj(time_ids.flatten()).reshape(BATCH, -1)], dim=-1)
    hints = [torch.rand(BATCH, 3, 64, 64, generator=g) for _ in range(2)]  # rows differ: cross-row attention
    added = {"text_embeds": text_embeds, "time_ids": time_ids}
    data = dict(x=x, t=t, context=context, y=y, hints=hints, added=added)
    data["expected"] = [diffusers_residuals(model, data, [hints[i] for i in which], slots, scale)
                        for which, slots, scale in CASES]
    return model, d, data


def ldm_state_dict_from_diffusers_dict(sd):
    class _Holder:
        def state_dict(self):
            return sd

    return ldm_state_dict_from_diffusers(_Holder())


def diffusers_residuals(model, data, hints, slots, scale):
    control_type = torch.zeros(SLOTS).scatter_(0, torch.tensor(slots), 1).reshape(1, -1).repeat(BATCH, 1)
    with torch.no_grad():
        down, mid = model(data["x"], data["t"], data["context"], hints, control_type, slots, conditioning_scale=scale,
                          added_cond_kwargs=data["added"], return_dict=False)
    return [*down, mid]


LAYOUTS = ["diffusers", "xinsir_single.safetensors", "union_ldm.safetensors", "union_ldm_comfy.safetensors"]
CASES = [  # (hint indices, task slots, conditioning scale)
    ([0], [3], 1.0),
    ([1], [7], 0.6),
    ([0, 1], [3, 1], [1.0, 1.0]),
    ([0, 1], [2, 6], [0.7, 1.3]),
]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_union_matches_diffusers_with_one_and_two_hints(union, layout):
    model, d, data = union
    ours = load_control_model(d / layout)
    assert ours.kind == "controlnet_union" and ours.family == "sdxl" and ours.num_control_type == SLOTS
    for (which, slots, scale), expected in zip(CASES, data["expected"]):
        hints = [data["hints"][i] for i in which]
        scales = scale if isinstance(scale, list) else [scale]
        got = ours(data["x"], hints, data["t"], data["context"], data["y"], control_types=slots, scales=scales)
        assert len(got) == len(expected) == 10
        for i, (a, b) in enumerate(zip(got, expected)):
            assert a.shape == b.shape, i
            assert b.abs().max() > 1e-3, f"residual {i} is ~0: the test would not see a wrong layer"
            assert rel_err(a, b) <= 1e-5, (layout, slots, i, rel_err(a, b))


def test_the_task_head_matters(union):
    """A wrong slot, a dropped task head or tokens attending to each other would all be visible."""
    model, d, data = union
    ours = load_control_model(d / "diffusers")
    args = (data["x"], data["hints"][:1], data["t"], data["context"], data["y"])
    depth, edge = ours(*args, control_types=[1]), ours(*args, control_types=[3])
    assert rel_err(depth[0], edge[0]) > 1e-3
    # the alpha term: the fused hint differs from the bare encoded hint
    encoded = ours.encode_hint(data["hints"][0])
    assert rel_err(ours.fuse([encoded], [3], rows=BATCH), encoded.expand(BATCH, -1, -1, -1)) > 1e-3


def test_one_control_image_broadcasts_over_the_rows(union):
    """A [1, 3, H, W] hint (one image for every row) equals diffusers given it repeated."""
    model, d, data = union
    ours = load_control_model(d / "xinsir_single.safetensors")
    one = [h[:1] for h in data["hints"]]
    expected = diffusers_residuals(model, data, [h.repeat(BATCH, 1, 1, 1) for h in one], [0, 5], [0.8, 1.1])
    got = ours(data["x"], one, data["t"], data["context"], data["y"], control_types=[0, 5], scales=[0.8, 1.1])
    assert max(rel_err(a, b) for a, b in zip(got, expected)) <= 1e-5


def test_a_slot_the_model_lacks_is_refused(union, tmp_path):
    model6 = diffusers_union(union_config(6), seed=22)
    model6.save_pretrained(tmp_path / "u6", safe_serialization=True)
    ours = load_control_model(tmp_path / "u6")
    assert ours.num_control_type == 6
    _, _, data = union
    with pytest.raises(InputError, match="6 task slots") as e:
        ours(data["x"], data["hints"][:1], data["t"], data["context"], data["y"], control_types=[6])
    assert e.value.field == "union_control_type"


@pytest.mark.parametrize("slots", [6, 8])
def test_published_xinsir_layout_is_detected(slots):
    det = detect(diffusers_union_shapes(dict(XINSIR_UNION, num_control_type=slots)))
    assert (det.format, det.kind, det.family, det.variant) == ("controlnet-union", "controlnet_union", "sdxl", "full")
    assert det.key_map["task_embedding"] == "task_embedding"
    assert det.key_map["controlnet_cond_embedding.conv_in.weight"] == "input_hint_block.0.weight"
    assert det.arch.adm_in_channels == 2816 and det.arch.num_outputs == 10
