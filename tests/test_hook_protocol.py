"""The hook's effect protocol on a real ldm UNetModel (stable-diffusion-sdkit): what each kind of
contribution does, checked against the UNet's forward written out by hand (`plain_unet` below).

Kinds of models use these (T2I-Adapters: encoder features; style adapters: context tokens; post-UNet
corrections; attention patches; nested passes), so each is tested here on its own with a tiny effect.
"""

import pytest
import torch
from ldm.modules.diffusionmodules.util import timestep_embedding

from lib_controlnet import CallInfo, ControlHook
from lib_controlnet.hook.call import MIDDLE
from lib_controlnet.hook.cfg_rows import CfgBatchRows
from lib_controlnet.hook.effect import Effect
from tests.test_hook_ldm import hook_state
from tests.tiny_models import SD_LIKE_UNET, SDXL_LAYOUT_UNET, ldm_unet


def plain_unet(unet, x, t, context, features=None, residuals=None):
    """ldm's forward by hand: features[b] added right after input block b (MIDDLE: after the middle block),
    before the skip is kept; residuals[i] onto the skip from input block i and the last onto the middle."""
    features = features or {}
    emb = unet.time_embed(timestep_embedding(t, unet.model_channels))
    hs, h = [], x
    for b, block in enumerate(unet.input_blocks):
        h = block(h, emb, context)
        if b in features:
            h = h + features[b]
        hs.append(h)
    h = unet.middle_block(h, emb, context)
    if MIDDLE in features:
        h = h + features[MIDDLE]
    if residuals is not None:
        h = h + residuals[-1]
    for block in unet.output_blocks:
        skip = hs.pop()
        if residuals is not None:
            skip = skip + residuals[len(hs)]
        h = block(torch.cat([h, skip], dim=1), emb, context)
    return unet.out(h)


def block_shapes(unet, x, t, ctx):
    """Output shape of every input block and of the middle block for this input."""
    shapes = {}
    handles = [b.register_forward_hook(lambda m, a, o, i=i: shapes.__setitem__(i, o.shape))
               for i, b in enumerate(unet.input_blocks)]
    handles.append(unet.middle_block.register_forward_hook(lambda m, a, o: shapes.__setitem__(MIDDLE, o.shape)))
    try:
        with torch.no_grad():
            unet(x, t, ctx)
    finally:
        for h in handles:
            h.remove()
    return shapes


@pytest.fixture(scope="module")
def setup():
    unet = ldm_unet(SD_LIKE_UNET, seed=5)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 16, 16, generator=g)
    t = torch.tensor([700.0, 700.0])
    ctx = torch.randn(2, 5, 32, generator=g)
    return unet, x, t, ctx


class AddFeatures(Effect):
    def __init__(self, features, rows=None):
        self.features, self.rows, self.calls = features, rows, 0

    def contribute(self, call):
        self.calls += 1
        for block, value in self.features.items():
            call.add_feature(block, value, self.rows)


def run(unet, effects, x, t, ctx, info=None):
    with torch.no_grad(), ControlHook(unet, effects, lambda *a: info or CallInfo()).applied():
        return unet(x, t, ctx)


def close(a, b):
    return torch.allclose(a, b, rtol=1e-5, atol=1e-6 * b.abs().max().item())


@pytest.mark.parametrize("block", [0, 2, 5, 8, 11, MIDDLE])
def test_a_feature_lands_right_after_its_block(setup, block):
    unet, x, t, ctx = setup
    shape = block_shapes(unet, x, t, ctx)[block]
    feature = torch.randn(shape, generator=torch.Generator().manual_seed(11)) * 0.5
    out = run(unet, [AddFeatures({block: feature})], x, t, ctx)
    with torch.no_grad():
        expected = plain_unet(unet, x, t, ctx, features={block: feature})
        neighbour = {MIDDLE: 11, 11: 10}.get(block, block + 1)
        moved = plain_unet(unet, x, t, ctx, features={neighbour: feature}) \
            if block_shapes(unet, x, t, ctx)[neighbour] == shape else None
    assert close(out, expected)
    if moved is not None:  # the same feature one block off gives another output
        assert not close(out, moved)


def test_features_of_two_units_sum_and_respect_rows(setup):
    unet, x, t, ctx = setup
    shapes = block_shapes(unet, x, t, ctx)
    g = torch.Generator().manual_seed(12)
    a = {2: torch.randn(shapes[2], generator=g), 5: torch.randn(shapes[5], generator=g)}
    b = {5: torch.randn(1, *shapes[5][1:], generator=g)}  # computed for row 1 only
    out = run(unet, [AddFeatures(a), AddFeatures(b, rows=(1,))], x, t, ctx)
    row_b = torch.zeros(shapes[5])
    row_b[1] = b[5][0]
    with torch.no_grad():
        expected = plain_unet(unet, x, t, ctx, features={2: a[2], 5: a[5] + row_b})
    assert close(out, expected)


def test_features_at_another_size_are_resized_nearest(setup):
    """Odd sizes: a feature computed at a slightly different size is aligned like residuals (nearest)."""
    unet, x, t, ctx = setup
    shape = block_shapes(unet, x, t, ctx)[2]
    small = torch.randn(shape[0], shape[1], shape[2] - 2, shape[3] - 2, generator=torch.Generator().manual_seed(2))
    out = run(unet, [AddFeatures({2: small})], x, t, ctx)
    aligned = torch.nn.functional.interpolate(small, size=shape[-2:], mode="nearest")
    with torch.no_grad():
        assert close(out, plain_unet(unet, x, t, ctx, features={2: aligned}))


class AppendTokens(Effect):
    def __init__(self, tokens, rows):
        self.tokens, self.rows = tokens, rows

    def edit_context(self, call):
        call.append_context(self.tokens, self.rows)


class SeeContext(Effect):
    seen = None

    def contribute(self, call):
        self.seen = call.context


def test_context_tokens_reach_the_unet_and_every_unit(setup):
    unet, x, t, ctx = setup
    tokens = torch.randn(1, 3, 32, generator=torch.Generator().manual_seed(4))
    watcher = SeeContext()
    # the watcher comes first in unit order and still sees the tokens: contexts are edited before contributions
    out = run(unet, [watcher, AppendTokens(tokens, rows=(0,))], x, t, ctx, CallInfo(cond_rows=(0,)))
    extended = torch.cat([ctx, torch.cat([tokens, torch.zeros_like(tokens)])], dim=1)  # uncond row: zeros
    with torch.no_grad():
        expected = unet(x, t, extended)
    assert close(out, expected)
    assert torch.equal(watcher.seen, extended)


class Scale(Effect):
    def __init__(self, factor):
        self.factor = factor

    def contribute(self, call):
        call.correct_output(lambda out, c: out * self.factor + c.x.mean())


def test_output_corrections_apply_in_unit_order(setup):
    unet, x, t, ctx = setup
    out = run(unet, [Scale(2.0), Scale(-0.5)], x, t, ctx)
    with torch.no_grad():
        base = unet(x, t, ctx)
    expected = (base * 2.0 + x.mean()) * -0.5 + x.mean()
    assert close(out, expected)


class NestedPass(Effect):
    """Runs the UNet once more inside the call (like reference-only's write pass), effects suspended."""

    def __init__(self):
        self.nested = None
        self.hooks = None

    def attach(self, hooks):
        self.hooks = hooks

    def contribute(self, call):
        with self.hooks.suspended():
            self.nested = self.hooks.unet(call.x, call.timesteps, call.context)


def test_a_nested_pass_runs_plain_and_leaves_the_row_ledger_alone(setup):
    unet, x, t, ctx = setup
    rows = CfgBatchRows()
    rows.start_step(1, 1, fraction=0.5)
    effect = NestedPass()
    with torch.no_grad(), ControlHook(unet, [effect, Scale(1.0)], rows).applied():
        out = unet(x, t, ctx)
        assert rows._step.offset == x.shape[0]  # the step's rows were consumed by the outer call only
    with torch.no_grad():
        plain = unet(x, t, ctx)
    assert torch.equal(effect.nested, plain)  # no correction inside the nested pass
    assert close(out, plain + x.mean())  # the outer call got Scale(1.0)'s correction


class PatchAttention(Effect):
    """Registers its own module hooks (as attention patches do) through the hook's registrar."""

    def __init__(self):
        self.calls_seen = []

    def attach(self, hooks):
        for name, module in hooks.unet.named_modules():
            if name.endswith("attn2"):
                hooks.forward(module, lambda m, a, o, name=name: self.calls_seen.append(
                    (name, hooks.current is not None)) or o * 1.5)


def test_attention_patches_are_owned_and_removed_exactly_also_on_error(setup):
    unet, x, t, ctx = setup
    before = hook_state(unet)
    effect = PatchAttention()
    with torch.no_grad():
        baseline = unet(x, t, ctx)
    hook = ControlHook(unet, [effect])
    with pytest.raises(ValueError, match="boom"), hook.applied():
        with torch.no_grad():
            patched = unet(x, t, ctx)
        assert not torch.equal(patched, baseline)
        assert effect.calls_seen and all(inside for _, inside in effect.calls_seen)
        raise ValueError("boom")
    assert hook_state(unet) == before and not hook.attached
    with torch.no_grad():
        assert torch.equal(unet(x, t, ctx), baseline)


class Grouped(Effect):
    groups_seen: list = []

    def __init__(self, key, value):
        self.key, self.value = key, value

    def group_key(self):
        return self.key

    @classmethod
    def contribute_group(cls, effects, call):
        cls.groups_seen.append([e.value for e in effects])
        call.correct_output(lambda out, c: out + sum(e.value for e in effects))


def test_effects_with_one_group_key_contribute_together(setup):
    unet, x, t, ctx = setup
    Grouped.groups_seen = []
    out = run(unet, [Grouped("a", 1.0), Grouped("b", 10.0), Grouped("a", 2.0)], x, t, ctx)
    assert Grouped.groups_seen == [[1.0, 2.0], [10.0]]
    with torch.no_grad():
        assert close(out, unet(x, t, ctx) + 13.0)


class Raises(Effect):
    def contribute(self, call):
        raise RuntimeError("unit failed")


def test_a_unit_that_raises_leaves_no_call_state_behind(setup):
    unet, x, t, ctx = setup
    before = hook_state(unet)
    hook = ControlHook(unet, [AddFeatures({2: torch.zeros(1)}), Raises()]).attach()
    try:
        with pytest.raises(RuntimeError, match="unit failed"), torch.no_grad():
            unet(x, t, ctx)
        assert hook._stack == [] and hook.current is None
    finally:
        hook.remove()
    assert hook_state(unet) == before


def test_inactive_effects_are_not_asked_to_contribute(setup):
    unet, x, t, ctx = setup

    class Late(AddFeatures):
        def active(self, info):
            return info.fraction >= 0.5

    effect = Late({MIDDLE: torch.ones(())})
    with torch.no_grad():
        baseline = unet(x, t, ctx)
    assert torch.equal(run(unet, [effect], x, t, ctx, CallInfo(fraction=0.2)), baseline)
    assert effect.calls == 0
    assert not torch.equal(run(unet, [effect], x, t, ctx, CallInfo(fraction=0.5)), baseline)
    assert effect.calls == 1


def test_sdxl_layout_middle_feature():
    unet = ldm_unet(SDXL_LAYOUT_UNET, seed=8)
    g = torch.Generator().manual_seed(1)
    x, ctx = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 3, 64, generator=g)
    t = torch.tensor([500.0, 500.0])

    def plain(features):
        emb = unet.time_embed(timestep_embedding(t, unet.model_channels))
        hs, h = [], x
        for b, block in enumerate(unet.input_blocks):
            h = block(h, emb, ctx)
            h = h + features.get(b, 0)
            hs.append(h)
        h = unet.middle_block(h, emb, ctx) + features.get(MIDDLE, 0)
        for block in unet.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb, ctx)
        return unet.out(h)

    shapes = {}
    handles = [b.register_forward_hook(lambda m, a, o, i=i: shapes.__setitem__(i, o.shape))
               for i, b in enumerate(unet.input_blocks)]
    handles.append(unet.middle_block.register_forward_hook(lambda m, a, o: shapes.__setitem__(MIDDLE, o.shape)))
    with torch.no_grad():
        unet(x, t, ctx)
    for h in handles:
        h.remove()
    features = {b: torch.randn(shapes[b], generator=g) for b in (3, 5, 8, MIDDLE)}  # T2I-Adapter XL's points
    with torch.no_grad(), ControlHook(unet, [AddFeatures(features)]).applied():
        out = unet(x, t, ctx)
    with torch.no_grad():
        assert close(out, plain(features))
