"""ControlNet units through the core's ControlHook: weight 0, effect, cond rows, start/end, clean removal."""

from __future__ import annotations

import pytest
import torch

from lib_controlnet import BoundUnit, ControlMode
from tests.standalone.helpers import hook_count, pixels, small


class RowRecorder:
    """Counts the batch rows (and keeps the text context) of every ControlNet forward."""

    def __init__(self, controlnet):
        self.rows: list[int] = []
        self.contexts: list[torch.Tensor] = []
        self.handle = controlnet.net.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        x, context = args[0], args[3]
        self.rows.append(x.shape[0])
        self.contexts.append(context.clone())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_weight_zero_is_bit_identical_to_no_unit(pipeline, controlnet, hint):
    plain = pipeline.generate(small())
    with RowRecorder(controlnet) as seen:
        zero = pipeline.generate(small(units=[BoundUnit(controlnet, hint, weight=0.0)]))
    assert torch.equal(plain.latents, zero.latents)
    assert torch.equal(pixels(plain)[0], pixels(zero)[0])
    assert seen.rows == []  # not even run


def test_a_unit_changes_the_image_and_follows_its_hint(pipeline, controlnet, hint):
    plain = pipeline.generate(small())
    controlled = pipeline.generate(small(units=[BoundUnit(controlnet, hint)]))
    other_hint = pipeline.generate(small(units=[BoundUnit(controlnet, 1 - hint)]))
    again = pipeline.generate(small(units=[BoundUnit(controlnet, hint)]))
    assert (controlled.latents - plain.latents).abs().mean() > 1e-3
    assert (controlled.latents - other_hint.latents).abs().mean() > 1e-4
    assert torch.equal(controlled.latents, again.latents)


@pytest.mark.parametrize(
    "mode, rows_seen",
    [(ControlMode.CONTROL, 2), (ControlMode.BALANCED, 4), (ControlMode.PROMPT, 4)],
)
def test_the_controlnet_sees_cond_rows_only_when_it_is_more_important(pipeline, controlnet, hint, mode, rows_seen):
    request = small(batch_size=2, units=[BoundUnit(controlnet, hint, control_mode=mode)])
    with RowRecorder(controlnet) as seen:
        pipeline.generate(request)
    assert seen.rows == [rows_seen] * request.steps
    cond = pipeline.model.prompts.encode([request.prompt])
    uncond = pipeline.model.prompts.encode([request.negative_prompt])
    first = seen.contexts[0]
    assert torch.equal(first[0], cond[0]) and torch.equal(first[1], cond[0])  # rows 0, 1: the prompt
    if rows_seen == 4:
        assert torch.equal(first[2], uncond[0]) and torch.equal(first[3], uncond[0])


def test_cfg_scale_one_sends_cond_rows_only(pipeline, controlnet, hint):
    with RowRecorder(controlnet) as seen:
        pipeline.generate(small(cfg_scale=1.0, units=[BoundUnit(controlnet, hint)]))
    assert seen.rows == [1] * 4


@pytest.mark.parametrize("start, end, runs", [(0.5, 1.0, 2), (0.0, 0.25, 2), (0.3, 0.6, 1), (0.0, 1.0, 4)])
def test_guidance_start_and_end_follow_the_step_fraction(pipeline, controlnet, hint, start, end, runs):
    """4 steps report fractions 0, 0.25, 0.5, 0.75; a unit is active when start <= fraction <= end."""
    with RowRecorder(controlnet) as seen:
        pipeline.generate(small(units=[BoundUnit(controlnet, hint, guidance_start=start, guidance_end=end)]))
    assert len(seen.rows) == runs


def test_img2img_with_a_unit_uses_the_img2img_step_count(pipeline, controlnet, hint):
    from tests.standalone.test_standalone_pipeline import init_image

    unit = BoundUnit(controlnet, hint, guidance_end=0.5)
    with RowRecorder(controlnet) as seen:
        pipeline.generate(small(init_images=[init_image()], denoising_strength=0.5, steps=8, units=[unit]))
    # t_enc 4 -> 5 steps, fractions 0, .2, .4, .6, .8: the first three are within [0, 0.5]
    assert len(seen.rows) == 3


def test_hooks_are_removed_after_generation_and_after_an_exception(pipeline, controlnet, hint):
    unet = pipeline.model.unet
    before = hook_count(unet)
    units = [BoundUnit(controlnet, hint), BoundUnit(controlnet, 1 - hint, control_mode=ControlMode.CONTROL)]
    during = []
    pipeline.generate(small(units=units), on_step=lambda progress: during.append(hook_count(unet)))
    assert min(during) > before  # attached while sampling...
    assert hook_count(unet) == before  # ...and gone afterwards

    class Stop(Exception):
        pass

    def stop_at_step_2(progress):
        if progress.step == 2:
            raise Stop

    with pytest.raises(Stop):
        pipeline.generate(small(units=units), on_step=stop_at_step_2)
    assert hook_count(unet) == before
    # and the UNet behaves exactly as before any unit touched it
    assert torch.equal(pipeline.generate(small()).latents, pipeline.generate(small()).latents)
    assert all(not u._cache for u in units)  # per-generation hint caches dropped too


def test_a_unit_at_a_size_that_is_not_a_multiple_of_64(pipeline, controlnet, hint):
    """The hint is resized to 8x the latent; residuals meet the UNet's odd-sized skips."""
    plain = pipeline.generate(small(width=72, height=88, steps=2))
    controlled = pipeline.generate(small(width=72, height=88, steps=2, units=[BoundUnit(controlnet, hint)]))
    assert controlled.images[0].size == (72, 88)
    assert (controlled.latents - plain.latents).abs().mean() > 1e-3

