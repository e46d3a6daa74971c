"""The hook on a real ldm UNetModel (stable-diffusion-sdkit, the ldm code A1111 runs).

Every expectation is computed by `plain_unet` below: the UNet's forward written out by hand with
residual i added to the skip connection of input block i and the last onto the middle block's output.
"""

import pytest
import torch
from ldm.modules.diffusionmodules.util import timestep_embedding

from lib_controlnet import (
    BoundUnit,
    CallInfo,
    ControlHook,
    ControlMode,
    HiResFixOption,
    IncompatibleModelError,
    InputError,
    load_control_model,
)
from tests.tiny_models import (
    SD_LIKE_UNET,
    SDXL_LAYOUT_UNET,
    controlnet_state_dict_from_unet,
    ldm_unet,
    save_state_dict,
)

SOFT = [0.825 ** (12 - i) for i in range(13)]


def plain_unet(unet, x, t, context, control=None):
    emb = unet.time_embed(timestep_embedding(t, unet.model_channels))
    hs, h = [], x
    for block in unet.input_blocks:
        h = block(h, emb, context)
        hs.append(h)
    h = unet.middle_block(h, emb, context)
    if control is not None:
        h = h + control[-1]
    for block in unet.output_blocks:
        skip = hs.pop()
        if control is not None:
            skip = skip + control[len(hs)]  # the popped skip came from input block len(hs)
        h = block(torch.cat([h, skip], dim=1), emb, context)
    return unet.out(h)


def hook_state(module):
    """Everything a hook could leave behind on any submodule."""
    return [
        (
            name,
            tuple(m._forward_pre_hooks),
            tuple(m._forward_hooks),
            tuple(getattr(m, "_forward_hooks_always_called", {})),
            "forward" in m.__dict__,
        )
        for name, m in module.named_modules()
    ]


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    unet = ldm_unet(SD_LIKE_UNET, seed=5)
    sd = controlnet_state_dict_from_unet(unet, seed=6)
    path = save_state_dict(sd, tmp_path_factory.mktemp("cn") / "cn.safetensors")
    model = load_control_model(path)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 4, 16, 16, generator=g)
    t = torch.tensor([800.0, 800.0])
    ctx = torch.randn(2, 5, 32, generator=g)
    hint = torch.rand(1, 3, 128, 128, generator=g)
    return unet, model, x, t, ctx, hint


def residuals(model, x, hint, t, ctx, scales, rows=None):
    outs = model(x, hint, t, ctx)
    outs = [o * s for o, s in zip(outs, scales)]
    if rows is not None:  # zero the rows the unit must not touch
        keep = torch.zeros(x.shape[0], 1, 1, 1)
        keep[list(rows)] = 1
        outs = [o * keep for o in outs]
    return outs


def run(unet, units, x, t, ctx, info=None):
    info = info or CallInfo()
    with torch.no_grad(), ControlHook(unet, units, lambda *a: info).applied() as hook:
        return unet(x, t, ctx), hook.runs


def close(a, b):
    return torch.allclose(a, b, rtol=1e-5, atol=1e-6 * b.abs().max().item())


def test_balanced_unit_equals_plain_computation(sd):
    unet, model, x, t, ctx, hint = sd
    with torch.no_grad():
        expected = plain_unet(unet, x, t, ctx, residuals(model, x, hint, t, ctx, [0.7] * 13))
        baseline = unet(x, t, ctx)
    out, runs = run(unet, [BoundUnit(model, hint, weight=0.7)], x, t, ctx)
    assert runs == 1
    assert close(out, expected)
    assert (out - baseline).abs().max() > 1e-3  # the unit really changed the output


@pytest.mark.parametrize(
    "kwargs, fraction",
    [
        ({"weight": 0.0}, 0.5),
        ({"guidance_start": 0.3}, 0.2),
        ({"guidance_end": 0.4}, 0.41),
        ({"advanced_weighting": [0.0] * 13}, 0.5),
        ({"hr_option": HiResFixOption.HIGH_RES_ONLY}, 0.5),
    ],
)
def test_inactive_unit_is_bit_identical_and_never_runs(sd, kwargs, fraction):
    unet, model, x, t, ctx, hint = sd
    with torch.no_grad():
        baseline = unet(x, t, ctx)
    out, runs = run(unet, [BoundUnit(model, hint, **kwargs)], x, t, ctx, CallInfo(fraction=fraction))
    assert runs == 0
    assert torch.equal(out, baseline)


def test_range_edges_are_inclusive(sd):
    unet, model, x, t, ctx, hint = sd
    unit = BoundUnit(model, hint, guidance_start=0.25, guidance_end=0.75)
    for fraction, active in [(0.25, True), (0.75, True), (0.2499, False), (0.7501, False)]:
        _, runs = run(unet, [unit], x, t, ctx, CallInfo(fraction=fraction))
        assert runs == int(active), fraction


def test_prompt_mode_applies_soft_scales_to_both_halves(sd):
    unet, model, x, t, ctx, hint = sd
    with torch.no_grad():
        expected = plain_unet(unet, x, t, ctx, residuals(model, x, hint, t, ctx, [0.9 * s for s in SOFT]))
    out, _ = run(unet, [BoundUnit(model, hint, weight=0.9, control_mode=ControlMode.PROMPT)], x, t, ctx,
                 CallInfo(cond_rows=(0,)))
    assert close(out, expected)


def test_controlnet_mode_runs_on_cond_rows_only(sd):
    unet, model, x, t, ctx, hint = sd
    seen = []
    handle = model.net.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    try:
        out, runs = run(unet, [BoundUnit(model, hint, control_mode=ControlMode.CONTROL)], x, t, ctx,
                        CallInfo(cond_rows=(1,)))
    finally:
        handle.remove()
    assert runs == 1 and seen == [1]  # one row computed, not two with one zeroed
    with torch.no_grad():
        expected = plain_unet(unet, x, t, ctx, residuals(model, x, hint, t, ctx, SOFT, rows=(1,)))
        baseline = unet(x, t, ctx)
    assert close(out, expected)
    assert torch.allclose(out[0], baseline[0], atol=1e-6)  # the uncond row got nothing
    assert (out[1] - baseline[1]).abs().max() > 1e-3


def test_controlnet_mode_skips_uncond_only_calls(sd):
    """batch_cond_uncond off: the uncond pass arrives alone and the ControlNet does not run for it."""
    unet, model, x, t, ctx, hint = sd
    with torch.no_grad():
        baseline = unet(x, t, ctx)
    out, runs = run(unet, [BoundUnit(model, hint, control_mode="ControlNet is more important")], x, t, ctx,
                    CallInfo(cond_rows=()))
    assert runs == 0 and torch.equal(out, baseline)


def test_two_units_sum_and_per_row_hints(sd):
    unet, model, x, t, ctx, hint = sd
    hint2 = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(9))  # one map per row
    a = residuals(model, x, hint, t, ctx, [0.5] * 13)
    b = residuals(model, x, hint2, t, ctx, [0.8 * s for s in SOFT])
    with torch.no_grad():
        expected = plain_unet(unet, x, t, ctx, [p + q for p, q in zip(a, b)])
    units = [BoundUnit(model, hint, weight=0.5), BoundUnit(model, hint2, weight=0.8, control_mode=ControlMode.PROMPT)]
    out, runs = run(unet, units, x, t, ctx)
    assert runs == 2 and close(out, expected)


def test_advanced_weighting_replaces_scales_and_checks_length(sd):
    unet, model, x, t, ctx, hint = sd
    weights = [0.1 * i for i in range(13)]
    with torch.no_grad():
        expected = plain_unet(unet, x, t, ctx, residuals(model, x, hint, t, ctx, weights))
    out, _ = run(unet, [BoundUnit(model, hint, weight=2.0, advanced_weighting=weights)], x, t, ctx)
    assert close(out, expected)
    with pytest.raises(InputError) as e:
        BoundUnit(model, hint, advanced_weighting=[1.0] * 12, index=2)
    assert e.value.unit == 2 and e.value.field == "advanced_weighting" and "13" in str(e.value)


def test_effective_region_mask_is_resized_bilinearly_per_residual(sd):
    unet, model, x, t, ctx, hint = sd
    mask = torch.zeros(128, 128)
    mask[:, :40] = 1.0
    outs = residuals(model, x, hint, t, ctx, [1.0] * 13)
    masked = [
        o * torch.nn.functional.interpolate(mask[None, None], size=o.shape[-2:], mode="bilinear", align_corners=False)
        for o in outs
    ]
    with torch.no_grad():
        expected = plain_unet(unet, x, t, ctx, masked)
    out, _ = run(unet, [BoundUnit(model, hint, effective_region_mask=mask)], x, t, ctx)
    assert close(out, expected)


def test_global_average_pooling_cond_rows_only(sd):
    unet, model, x, t, ctx, hint = sd
    seen = []
    handle = model.net.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    try:
        out, _ = run(unet, [BoundUnit(model, hint, global_average_pooling=True)], x, t, ctx, CallInfo(cond_rows=(0,)))
    finally:
        handle.remove()
    assert seen == [1]
    pooled = [o.mean(dim=(2, 3), keepdim=True) for o in residuals(model, x, hint, t, ctx, [1.0] * 13, rows=(0,))]
    with torch.no_grad():
        expected = plain_unet(unet, x, t, ctx, pooled)
    assert close(out, expected)


def test_hires_pass_picks_the_hires_hint_and_honours_hr_option(sd):
    unet, model, x, t, ctx, hint = sd
    big_x = torch.randn(2, 4, 24, 24, generator=torch.Generator().manual_seed(4))
    hint_hr = torch.rand(1, 3, 192, 192, generator=torch.Generator().manual_seed(5))
    unit = BoundUnit(model, hint, hint_hires=hint_hr)
    with torch.no_grad():
        expected = plain_unet(unet, big_x, t, ctx, residuals(model, big_x, hint_hr, t, ctx, [1.0] * 13))
    out, _ = run(unet, [unit], big_x, t, ctx, CallInfo(hires=True))
    assert close(out, expected)
    _, runs = run(unet, [BoundUnit(model, hint, hint_hires=hint_hr, hr_option="Low res only")], big_x, t, ctx,
                  CallInfo(hires=True))
    assert runs == 0


def test_removal_restores_the_unet_exactly_also_after_an_error(sd):
    unet, model, x, t, ctx, hint = sd
    before = hook_state(unet)
    params = {k: v.clone() for k, v in unet.state_dict().items()}
    with torch.no_grad():
        baseline = unet(x, t, ctx)
    hook = ControlHook(unet, [BoundUnit(model, hint)]).attach()
    assert hook_state(unet) != before
    hook.remove()
    assert hook_state(unet) == before

    def failing_info(*_):
        raise RuntimeError("sampler interrupted")

    hook = ControlHook(unet, [BoundUnit(model, hint)], failing_info)
    with pytest.raises(RuntimeError, match="interrupted"), hook.applied():
        unet(x, t, ctx)
    assert hook_state(unet) == before
    assert all(torch.equal(v, params[k]) for k, v in unet.state_dict().items())
    with torch.no_grad():
        assert torch.equal(unet(x, t, ctx), baseline)


def test_an_error_inside_the_unet_leaves_no_residuals_behind(sd):
    """A forward that raises mid-way must not leak this call's residuals into the next call."""
    unet, model, x, t, ctx, hint = sd
    unit = BoundUnit(model, hint)
    hook = ControlHook(unet, [unit]).attach()
    try:
        boom = unet.output_blocks[3].register_forward_pre_hook(lambda *a: (_ for _ in ()).throw(ValueError("boom")))
        with pytest.raises(ValueError), torch.no_grad():
            unet(x, t, ctx)
        boom.remove()
        assert hook._stack == []
    finally:
        hook.remove()


def test_composes_with_another_extension_that_wraps_forward(sd):
    """Another extension replaced forward (as A1111 extensions do); our hooks still apply, theirs survives."""
    unet, model, x, t, ctx, hint = sd
    original = unet.forward
    unet.forward = lambda *a, **k: original(*a, **k) * 2.0
    try:
        with torch.no_grad():
            expected = 2.0 * plain_unet(unet, x, t, ctx, residuals(model, x, hint, t, ctx, [1.0] * 13))
        out, _ = run(unet, [BoundUnit(model, hint)], x, t, ctx)
        assert close(out, expected)
        assert "forward" in unet.__dict__  # their patch is untouched
    finally:
        del unet.forward


def test_context_replacement_from_the_host(sd):
    """A host that marks rows inside the context hands the UNet a cleaned context through CallInfo."""
    unet, model, x, t, ctx, hint = sd
    marked = torch.cat([torch.full((2, 1, 32), 1024.0), ctx], dim=1)
    with torch.no_grad():
        expected = plain_unet(unet, x, t, ctx, residuals(model, x, hint, t, ctx, [1.0] * 13))
    out, _ = run(unet, [BoundUnit(model, hint)], x, t, marked, CallInfo(context=ctx))
    assert close(out, expected)


def test_sdxl_layout_has_ten_injection_points(tmp_path):
    unet = ldm_unet(SDXL_LAYOUT_UNET, seed=8)
    assert len(unet.input_blocks) == 9
    sd = controlnet_state_dict_from_unet(unet, seed=9)
    model = load_control_model(save_state_dict(sd, tmp_path / "xl.safetensors"))
    assert model.num_outputs == 10
    g = torch.Generator().manual_seed(1)
    x, ctx = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 3, 64, generator=g)
    hint = torch.rand(1, 3, 128, 128, generator=g)
    t = torch.tensor([500.0, 500.0])
    soft10 = SOFT[:10]  # the reference's SDXL rule: the first 10 values of the SD1.5 list
    with torch.no_grad():
        expected = plain_unet(unet, x, t, ctx, residuals(model, x, hint, t, ctx, soft10))
    out, _ = run(unet, [BoundUnit(model, hint, control_mode=ControlMode.PROMPT)], x, t, ctx)
    assert close(out, expected)


def test_wrong_architecture_is_refused_naming_unit_and_field(sd, tmp_path):
    unet, model, *_ , hint = sd
    xl_unet = ldm_unet(SDXL_LAYOUT_UNET, seed=8)
    with pytest.raises(IncompatibleModelError) as e:
        ControlHook(xl_unet, [BoundUnit(model, hint, index=1)])
    assert e.value.unit == 1 and e.value.field == "model"
    with pytest.raises(IncompatibleModelError, match="sd1 ControlNet but the checkpoint is sdxl"):
        ControlHook(unet, [BoundUnit(model, hint)], family="sdxl")
