"""Union units in the hook, on a class-conditional SDXL-layout ldm UNet (sdkit blocks, sgm's label_emb).

Expectations are the UNet's forward written out by hand (`plain_unet`) with the residuals the union model
itself returns for the same hints (its math is pinned to diffusers in test_parity_union.py). What is tested
here is the hook side: k units of one union model -> one forward (counted), each unit's weight honoured as
its hint scale, units that cannot share a forward run apart, rows, removal exact.
"""

import pytest
import torch
from ldm.modules.diffusionmodules.util import timestep_embedding

from lib_controlnet import CallInfo, ControlHook, ControlMode, IncompatibleModelError, InputError, load_control_model
from lib_controlnet.enums import UnionControlType as T
from lib_controlnet.hook.weighting import soft_scales
from lib_controlnet.kinds.union_unit import UnionUnit
from tests.test_hook_ldm import hook_state
from tests.tiny_models import SDXL_ADM, save_state_dict, sdxl_like_unet, union_state_dict_from_unet

SOFT10 = soft_scales(10)


@pytest.fixture(scope="module")
def xl(tmp_path_factory):
    unet = sdxl_like_unet(seed=31)
    sd = union_state_dict_from_unet(unet, slots=6, seed=32)
    model = load_control_model(save_state_dict(sd, tmp_path_factory.mktemp("u") / "union_xl.safetensors"))
    g = torch.Generator().manual_seed(33)
    x = torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([600.0, 600.0])
    ctx = torch.randn(2, 3, 64, generator=g)
    y = torch.randn(2, SDXL_ADM, generator=g)
    hints = [torch.rand(1, 3, 64, 64, generator=g) for _ in range(3)]
    return unet, model, dict(x=x, t=t, ctx=ctx, y=y, hints=hints)


def plain_unet(unet, x, t, ctx, y, control=None):
    emb = unet.time_embed(timestep_embedding(t, unet.model_channels)) + unet.label_emb(y)
    hs, h = [], x
    for block in unet.input_blocks:
        h = block(h, emb, ctx)
        hs.append(h)
    h = unet.middle_block(h, emb, ctx)
    if control is not None:
        h = h + control[-1]
    for block in unet.output_blocks:
        skip = hs.pop()
        if control is not None:
            skip = skip + control[len(hs)]
        h = block(torch.cat([h, skip], dim=1), emb, ctx)
    return unet.out(h)


def union_residuals(model, d, hints, slots, scales, ramp=None, rows=None):
    x, t, ctx, y = d["x"], d["t"], d["ctx"], d["y"]
    if rows is not None:
        x, t, ctx, y = x[list(rows)], t[list(rows)], ctx[list(rows)], y[list(rows)]
    outs = model(x, hints, t, ctx, y, control_types=slots, scales=scales)
    outs = [o * s for o, s in zip(outs, ramp or [1.0] * 10)]
    if rows is not None:
        full = []
        for o in outs:
            f = torch.zeros(d["x"].shape[0], *o.shape[1:])
            f[list(rows)] = o
            full.append(f)
        outs = full
    return outs


def add(*lists):
    return [sum(parts) for parts in zip(*lists)]


def run(unet, units, d, info=None):
    info = info or CallInfo()
    with torch.no_grad(), ControlHook(unet, units, lambda *a: info, family="sdxl").applied() as hook:
        return unet(d["x"], d["t"], d["ctx"], d["y"]), hook.runs


def close(a, b):
    return torch.allclose(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())


def test_k_units_of_one_union_model_run_as_one_forward_with_their_weights(xl):
    unet, model, d = xl
    h = d["hints"]
    units = [UnionUnit(model, h[0], weight=0.6, control_type=T.DEPTH, index=0),
             UnionUnit(model, h[1], weight=1.3, control_type=T.HARD_EDGE, index=1),
             UnionUnit(model, h[2], weight=1.0, control_type=T.OPENPOSE, index=2)]
    out, runs = run(unet, units, d)
    assert runs == 1  # three units, one ControlNet forward
    with torch.no_grad():
        fused = union_residuals(model, d, h, [1, 3, 0], [0.6, 1.3, 1.0])
        expected = plain_unet(unet, d["x"], d["t"], d["ctx"], d["y"], fused)
        one_by_one = plain_unet(unet, d["x"], d["t"], d["ctx"], d["y"], add(
            *(union_residuals(model, d, [hint], [slot], [w], [w] * 10) for hint, slot, w in
              zip(h, [1, 3, 0], [0.6, 1.3, 1.0]))))
        baseline = unet(d["x"], d["t"], d["ctx"], d["y"])
    assert close(out, expected)
    assert not close(out, one_by_one)  # a fused forward is not the sum of three
    assert (out - baseline).abs().max() > 1e-3

    # a unit's weight is honoured: changing it changes the output as the fused model says
    units[0].weight = 0.2
    out2, _ = run(unet, units, d)
    with torch.no_grad():
        expected2 = plain_unet(unet, d["x"], d["t"], d["ctx"], d["y"],
                               union_residuals(model, d, h, [1, 3, 0], [0.2, 1.3, 1.0]))
    assert close(out2, expected2) and not close(out2, out)


def test_a_unit_alone_is_the_single_hint_forward_scaled_like_a_controlnet(xl):
    unet, model, d = xl
    unit = UnionUnit(model, d["hints"][0], weight=0.7, control_mode=ControlMode.PROMPT, control_type=T.SOFT_EDGE)
    out, runs = run(unet, [unit], d)
    assert runs == 1
    with torch.no_grad():
        res = union_residuals(model, d, d["hints"][:1], [2], None, [0.7 * s for s in SOFT10])
        assert close(out, plain_unet(unet, d["x"], d["t"], d["ctx"], d["y"], res))


def test_units_that_cannot_share_a_forward_run_apart(xl):
    """Another control mode (ramp and rows) or an Unknown type: own forwards, each scaled as alone."""
    unet, model, d = xl
    h = d["hints"]
    a = UnionUnit(model, h[0], weight=0.8, control_type=T.DEPTH)
    b = UnionUnit(model, h[1], weight=1.1, control_type=T.HARD_EDGE, control_mode=ControlMode.CONTROL)
    c = UnionUnit(model, h[2], weight=0.9)  # Unknown: no task slot, the reference's plain path
    info = CallInfo(cond_rows=(0,))
    out, runs = run(unet, [a, b, c], d, info)
    assert runs == 3
    with torch.no_grad():
        res = add(union_residuals(model, d, h[:1], [1], None, [0.8] * 10),
                  union_residuals(model, d, h[1:2], [3], None, [1.1 * s for s in SOFT10], rows=(0,)),
                  union_residuals(model, d, h[2:], [], None, [0.9] * 10))
        assert close(out, plain_unet(unet, d["x"], d["t"], d["ctx"], d["y"], res))


def test_cond_only_units_share_a_forward_on_the_cond_rows(xl):
    unet, model, d = xl
    h = d["hints"]
    units = [UnionUnit(model, h[0], weight=1.0, control_type=T.DEPTH, control_mode=ControlMode.CONTROL),
             UnionUnit(model, h[1], weight=0.5, control_type=T.NORMAL_MAP, control_mode=ControlMode.CONTROL)]
    out, runs = run(unet, units, d, CallInfo(cond_rows=(1,)))
    assert runs == 1
    with torch.no_grad():
        res = union_residuals(model, d, h[:2], [1, 4], [1.0, 0.5], SOFT10, rows=(1,))
        expected = plain_unet(unet, d["x"], d["t"], d["ctx"], d["y"], res)
    assert close(out, expected)
    with torch.no_grad():  # row 0 (uncond) got nothing at all
        baseline = unet(d["x"], d["t"], d["ctx"], d["y"])
    assert torch.allclose(out[0], baseline[0], atol=1e-6)


def test_start_end_decide_per_call_who_shares(xl):
    unet, model, d = xl
    h = d["hints"]
    early = UnionUnit(model, h[0], control_type=T.DEPTH, guidance_end=0.5)
    late = UnionUnit(model, h[1], weight=0.9, control_type=T.SEGMENTATION, guidance_start=0.3)
    _, both = run(unet, [early, late], d, CallInfo(fraction=0.4))
    out, alone = run(unet, [early, late], d, CallInfo(fraction=0.8))
    assert both == 1 and alone == 1
    with torch.no_grad():
        res = union_residuals(model, d, h[1:2], [5], None, [0.9] * 10)
        assert close(out, plain_unet(unet, d["x"], d["t"], d["ctx"], d["y"], res))


def test_the_fused_hint_is_computed_once_per_generation(xl):
    unet, model, d = xl
    units = [UnionUnit(model, d["hints"][0], control_type=T.DEPTH),
             UnionUnit(model, d["hints"][1], control_type=T.OPENPOSE)]
    calls = []
    original = model.fuse
    model.fuse = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        with torch.no_grad(), ControlHook(unet, units, lambda *a: CallInfo(), family="sdxl").applied() as hook:
            for step in range(3):
                unet(d["x"], d["t"] * (1 - step / 4), d["ctx"], d["y"])
        assert hook.runs == 3 and len(calls) == 1
    finally:
        del model.fuse


def test_removal_is_exact_also_on_error(xl):
    unet, model, d = xl
    before = hook_state(unet)
    with torch.no_grad():
        baseline = unet(d["x"], d["t"], d["ctx"], d["y"])
    units = [UnionUnit(model, d["hints"][0], control_type=T.DEPTH),
             UnionUnit(model, d["hints"][1], control_type=T.OPENPOSE)]
    hook = ControlHook(unet, units, family="sdxl")
    with pytest.raises(RuntimeError, match="sampler died"), hook.applied(), torch.no_grad():
        unet(d["x"], d["t"], d["ctx"], d["y"])
        raise RuntimeError("sampler died")
    assert hook_state(unet) == before and not hook.attached
    with torch.no_grad():
        assert torch.equal(unet(d["x"], d["t"], d["ctx"], d["y"]), baseline)
    assert all(not u._cache for u in units)


def test_union_on_another_family_fails_naming_unit_and_field(xl):
    unet, model, d = xl
    with pytest.raises(IncompatibleModelError, match="sdxl ControlNet Union but the checkpoint is sd1") as e:
        ControlHook(unet, [UnionUnit(model, d["hints"][0], control_type=T.DEPTH, index=2)], family="sd1")
    assert e.value.unit == 2 and e.value.field == "model"


def test_a_task_the_model_lacks_fails_naming_unit_and_field(xl):
    _, model, d = xl
    with pytest.raises(InputError, match="Tile is task slot 6.*6 slots") as e:
        UnionUnit(model, d["hints"][0], control_type=T.TILE, index=1)
    assert e.value.unit == 1 and e.value.field == "union_control_type"
