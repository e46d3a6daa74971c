"""`batch_same_model`: units of one plain ControlNet file in one call share a forward over stacked rows, and the
UNet output is what separate forwards give (the switch is off by default: bench/bench_union.py)."""

import torch

from lib_controlnet import BoundUnit, CallInfo, ControlMode
from tests.test_hook_ldm import close, hook_state, run
from tests.test_hook_ldm import sd as sd  # noqa: F401 - the fixture


def test_two_units_of_one_file_run_as_one_batched_forward(sd):  # noqa: F811
    unet, model, x, t, ctx, hint = sd
    other = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(9))
    before = hook_state(unet)

    def units(batch):
        return [BoundUnit(model, hint, weight=0.7, batch_same_model=batch),
                BoundUnit(model, other, weight=1.2, control_mode=ControlMode.PROMPT, batch_same_model=batch)]

    apart, runs_apart = run(unet, units(False), x, t, ctx, CallInfo(cond_rows=(0,)))
    batched, runs_batched = run(unet, units(True), x, t, ctx, CallInfo(cond_rows=(0,)))
    assert (runs_apart, runs_batched) == (2, 1)
    assert close(batched, apart)
    assert hook_state(unet) == before


def test_units_on_other_rows_do_not_share(sd):  # noqa: F811
    unet, model, x, t, ctx, hint = sd
    units = [BoundUnit(model, hint, batch_same_model=True),
             BoundUnit(model, hint, control_mode=ControlMode.CONTROL, batch_same_model=True)]  # cond rows only
    out, runs = run(unet, units, x, t, ctx, CallInfo(cond_rows=(0,)))
    expected, _ = run(unet, [BoundUnit(model, hint), BoundUnit(model, hint, control_mode=ControlMode.CONTROL)],
                      x, t, ctx, CallInfo(cond_rows=(0,)))
    assert runs == 2 and close(out, expected)
