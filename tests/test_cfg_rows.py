"""Row labelling for every way a CFG denoiser slices its [cond..., uncond...] batch."""

import torch

from lib_controlnet.hook.cfg_rows import CfgBatchRows


def calls(rows: CfgBatchRows, *sizes):
    return [rows(torch.zeros(n, 4, 8, 8)).cond_rows for n in sizes]


def test_one_call_with_cond_and_uncond():
    rows = CfgBatchRows()
    rows.start_step(2, 2, fraction=0.25)
    info = rows(torch.zeros(4, 4, 8, 8))
    assert info.cond_rows == (0, 1) and info.fraction == 0.25


def test_batch_cond_uncond_off_slices_by_batch_size():
    rows = CfgBatchRows()
    rows.start_step(2, 2, fraction=0.5)
    assert calls(rows, 2, 2) == [(0, 1), ()]


def test_and_prompts_give_more_cond_rows():
    """Two AND-ed prompts for a batch of 1: two cond rows, one uncond row, sliced by batch size 1."""
    rows = CfgBatchRows()
    rows.start_step(2, 1, fraction=0.5)
    assert calls(rows, 1, 1, 1) == [(0,), (0,), ()]


def test_skipped_uncond_tail():
    rows = CfgBatchRows()
    rows.start_step(2, 2, fraction=0.9)
    assert calls(rows, 2) == [(0, 1)]
    rows.start_step(2, 2, fraction=1.0)  # next step starts fresh
    assert calls(rows, 4) == [(0, 1)]


def test_calls_outside_a_step_or_beyond_it_treat_all_rows_as_cond():
    rows = CfgBatchRows()
    assert rows(torch.zeros(3, 4, 8, 8)).cond_rows is None
    rows.start_step(1, 1, fraction=0.0, hires=True)
    assert calls(rows, 2) == [(0,)]
    extra = rows(torch.zeros(2, 4, 8, 8))
    assert extra.cond_rows is None and extra.hires
