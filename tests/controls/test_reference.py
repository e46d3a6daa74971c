"""reference_only / reference_adain on sdkit's ldm UNet: the write pass banks what a plain UNet pass over the
noised reference latent computes, the read pass equals attention written out by hand over the concatenated
tokens and AdaIN written out by hand, layers are chosen by weight, uncond rows mix by style fidelity."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lib_controlnet import CallInfo, ControlHook
from lib_controlnet.controls import ControlRequest, build
from lib_controlnet.controls.reference import group_norm_points
from lib_controlnet.enums import ControlMode
from lib_controlnet.preprocessors.declaration import Params
from tests.controls.conftest import fake_encode, host
from tests.test_hook_ldm import hook_state

SEED = 7


def to_map(image):
    return (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def reference_units(module, image, *, weight=1.0, fidelity=0.5, mode=ControlMode.BALANCED, **kw):
    req = ControlRequest(index=0, module=module, params=Params(slider_1=fidelity), maps=[to_map(image)],
                         weight=weight, control_mode=mode, seed=SEED, family="sd1", **kw)
    return build("reference", req).effects


def ref_xt(image, x, t):
    pixels = torch.from_numpy(to_map(image)).permute(2, 0, 1)[None].float() / 255
    z = fake_encode(pixels).repeat(x.shape[0], 1, 1, 1)
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(SEED))
    a_bar = host().alphas_cumprod.double()[int(round(float(t[0])))]
    return (a_bar.sqrt() * z + (1 - a_bar).sqrt() * noise).float()


def blocks_by_width(unet):
    blocks = [m for m in unet.modules() if hasattr(m, "attn1") and hasattr(m, "norm1")]
    return sorted(blocks, key=lambda b: -b.norm1.normalized_shape[0])


class Probe:
    """Forward hooks of the test's own: what each attn1 saw and returned."""

    def __init__(self, modules, *, first=False):
        self.seen = {}
        self.handles = [m.register_forward_hook(self._hook(m), with_kwargs=True, prepend=first) for m in modules]

    def _hook(self, module):
        def hook(m, args, kwargs, output):
            self.seen.setdefault(module, []).append((args[0].clone(), kwargs.get("context"), output.clone()))
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def run(unet, effects, x, t, ctx, info):
    with torch.no_grad(), ControlHook(unet, effects, lambda *a: info, host=host()).applied():
        return unet(x, t, ctx)


def attention(attn, x, context):
    """CrossAttention written out: per-head softmax(q k^T / sqrt(d)) v, then to_out."""
    h = attn.heads
    q, k, v = attn.to_q(x), attn.to_k(context), attn.to_v(context)
    b, n, inner = q.shape
    d = inner // h

    def split(t):
        return t.reshape(b, -1, h, d).transpose(1, 2)

    w = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(d), dim=-1)
    out = (w @ split(v)).transpose(1, 2).reshape(b, n, inner)
    return attn.to_out(out)


def test_write_pass_banks_the_plain_reference_pass_and_read_attends_over_both(unet, inputs):
    x, t, ctx, image = inputs
    blocks = blocks_by_width(unet)
    attn1 = [b.attn1 for b in blocks]
    with torch.no_grad():
        plain_ref = Probe(attn1)
        unet(ref_xt(image, x, t), t, ctx)
        plain_ref.remove()
    weight, fidelity = 0.6, 0.5
    probe = Probe(attn1)
    try:
        run(unet, reference_units("reference_only", image, weight=weight, fidelity=fidelity), x, t, ctx,
            CallInfo(cond_rows=(0,)))
    finally:
        probe.remove()
    selected = [b.attn1 for i, b in enumerate(blocks) if weight > i / len(blocks)]
    assert 0 < len(selected) < len(blocks)
    for attn in attn1:
        # calls seen: the write pass, (for selected blocks) the plain uncond-row call, then the real call
        x_norm1, context, output = [c for c in probe.seen[attn] if c[0].shape[0] == x.shape[0]][-1]
        if attn not in selected:
            assert context is None  # untouched self-attention
            continue
        banked = plain_ref.seen[attn][0][0]  # norm1's output in the plain reference pass
        assert torch.allclose(context, torch.cat([x_norm1, banked], dim=1), atol=1e-5)
        with torch.no_grad():
            with_reference = attention(attn, x_norm1, context)
            plain = attention(attn, x_norm1, x_norm1)
        expected = with_reference.clone()
        expected[1] = fidelity * plain[1] + (1 - fidelity) * with_reference[1]  # row 1 is uncond
        assert torch.allclose(output, expected, rtol=1e-4, atol=1e-5)


def test_adain_renormalises_the_selected_blocks_to_the_banked_statistics(unet, inputs):
    x, t, ctx, image = inputs
    points = group_norm_points(unet)
    weight, fidelity = 1.0, 0.3
    selected = [m for m, w in points if weight > w]
    assert 0 < len(selected) < len(points)
    stats = {}
    hooks = [m.register_forward_hook(lambda mod, a, o: stats.__setitem__(mod, torch.var_mean(
        o, dim=(2, 3), keepdim=True, correction=0))) for m, _ in points]
    with torch.no_grad():
        unet(ref_xt(image, x, t), t, ctx)
    for h in hooks:
        h.remove()

    raw, final = {}, {}
    with torch.no_grad(), ControlHook(unet, reference_units("reference_adain", image, weight=weight,
                                                            fidelity=fidelity),
                                      lambda *a: CallInfo(cond_rows=(0,)), host=host()).applied():
        # registered after the hook attached: `prepend` runs before its AdaIN, the other after everything
        handles = [m.register_forward_hook(lambda mod, a, o: raw.__setitem__(mod, o.clone()), prepend=True)
                   for m, _ in points]
        handles += [m.register_forward_hook(lambda mod, a, o: final.__setitem__(mod, o.clone())) for m, _ in points]
        unet(x, t, ctx)
        for h in handles:
            h.remove()
    for module, _ in points:
        if module not in selected:
            assert torch.equal(raw[module], final[module])
            continue
        out = raw[module]
        var, mean = torch.var_mean(out, dim=(2, 3), keepdim=True, correction=0)
        var_ref, mean_ref = stats[module]
        adain = (out - mean) / var.clamp(min=1e-6).sqrt() * var_ref.clamp(min=1e-6).sqrt() + mean_ref
        expected = adain.clone()
        expected[1] = fidelity * out[1] + (1 - fidelity) * adain[1]
        assert torch.allclose(final[module], expected, rtol=1e-4, atol=1e-5)


def test_two_reference_units_bank_twice(unet, inputs):
    x, t, ctx, image = inputs
    widest = blocks_by_width(unet)[0].attn1
    probe = Probe([widest])
    try:
        units = reference_units("reference_only", image) + reference_units("reference_adain+attn", image)
        run(unet, units, x, t, ctx, CallInfo(cond_rows=(0,)))
    finally:
        probe.remove()
    (x_norm1, context, _), = [c for c in probe.seen[widest] if c[1] is not None and c[0].shape[0] == x.shape[0]]
    assert context.shape[1] == 3 * x_norm1.shape[1]


@pytest.mark.parametrize("kwargs, info", [
    ({"weight": 0.0}, CallInfo(fraction=0.5)),
    ({"guidance_end": 0.3}, CallInfo(fraction=0.5)),
])
def test_an_inactive_reference_unit_is_bit_identical_and_runs_no_extra_pass(unet, inputs, kwargs, info):
    x, t, ctx, image = inputs
    calls = []
    handle = unet.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        with torch.no_grad():
            plain = unet(x, t, ctx)
        out = run(unet, reference_units("reference_adain+attn", image, **kwargs), x, t, ctx, info)
    finally:
        handle.remove()
    assert torch.equal(out, plain) and len(calls) == 2


def test_an_active_unit_runs_one_extra_pass_and_changes_the_output(unet, inputs):
    x, t, ctx, image = inputs
    calls = []
    handle = unet.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        with torch.no_grad():
            plain = unet(x, t, ctx)
        out = run(unet, reference_units("reference_only", image), x, t, ctx, CallInfo(cond_rows=(0,)))
    finally:
        handle.remove()
    assert len(calls) == 3 and (out - plain).abs().max() > 1e-4


def test_style_fidelity_rules():
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    (balanced,) = reference_units("reference_only", image, fidelity=0.5)
    assert balanced.fidelity(CallInfo()) == 0.5 and balanced.fidelity(CallInfo(hires=True)) == 0.0
    (prompt,) = reference_units("reference_only", image, fidelity=0.5, mode=ControlMode.PROMPT)
    (control,) = reference_units("reference_only", image, fidelity=0.5, mode=ControlMode.CONTROL)
    assert prompt.fidelity(CallInfo()) == 0.0 and control.fidelity(CallInfo()) == 1.0
    req = ControlRequest(index=0, module="reference_only", params=Params(slider_1=0.5), maps=[to_map(image)],
                         family="sdxl")
    (sdxl,) = build("reference", req).effects
    assert sdxl.fidelity(CallInfo()) == pytest.approx(0.125)


def test_removal_is_exact_also_after_an_error(unet, inputs):
    x, t, ctx, image = inputs
    before = hook_state(unet)
    with torch.no_grad():
        plain = unet(x, t, ctx)
    hook = ControlHook(unet, reference_units("reference_adain+attn", image), lambda *a: CallInfo(), host=host())
    with pytest.raises(RuntimeError, match="stop"), hook.applied():
        with torch.no_grad():
            unet(x, t, ctx)
        raise RuntimeError("stop")
    assert hook_state(unet) == before
    with torch.no_grad():
        assert torch.equal(unet(x, t, ctx), plain)


def test_the_reference_noise_is_reproducible(unet, inputs):
    x, t, ctx, image = inputs
    a = run(unet, reference_units("reference_only", image), x, t, ctx, CallInfo(cond_rows=(0,)))
    b = run(unet, reference_units("reference_only", image), x, t, ctx, CallInfo(cond_rows=(0,)))
    assert torch.equal(a, b)


def test_fake_vae_is_what_the_unit_encodes(inputs):
    """Guards the expectations above: the unit's latent is the host's encoding of the map."""
    *_, image = inputs
    (unit,) = reference_units("reference_only", image)
    unit.latents.encode(host())
    pixels = torch.from_numpy(to_map(image)).permute(2, 0, 1)[None].float() / 255
    assert torch.allclose(unit.latents.at(torch.zeros(2, 4, 16, 16)), fake_encode(pixels).repeat(2, 1, 1, 1))
    assert F.avg_pool2d(pixels, 8).shape[-1] == 16
