"""txt2img, img2img and inpainting on the demo model: reproducibility, batches, progress, interruption."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from lib_controlnet.errors import InputError
from standalone import DEMO_NOTICE
from standalone.images import to_pil, to_tensor
from tests.standalone.helpers import hook_count, pixels, small


@pytest.mark.parametrize("sampler", ["Euler", "Euler a", "DPM++ 2M Karras"])
def test_txt2img_every_sampler_gives_a_finite_image(pipeline, sampler):
    result = pipeline.generate(small(sampler_name=sampler))
    assert len(result.images) == 1 and result.images[0].size == (64, 64) and result.images[0].mode == "RGB"
    assert torch.isfinite(result.latents).all()
    assert pixels(result)[0].std() > 1  # not a flat image
    assert result.is_demo and result.warnings == [DEMO_NOTICE]
    text = result.infotexts[0]
    assert text.startswith("a photo of a cat\nNegative prompt: blurry\nSteps: 4, Sampler: ")
    assert "Seed: 1234" in text and "Size: 64x64" in text and "Demo model: " in text


def test_same_seed_same_image_other_seed_other_image(pipeline):
    first, again = pipeline.generate(small(seed=42)), pipeline.generate(small(seed=42))
    other = pipeline.generate(small(seed=43))
    assert torch.equal(pixels(first)[0], pixels(again)[0])
    assert not torch.equal(pixels(first)[0], pixels(other)[0])


def test_batch_of_two_gives_two_images_with_consecutive_seeds(pipeline):
    result = pipeline.generate(small(seed=42, batch_size=2, sampler_name="Euler a"))
    a, b = pixels(result)
    assert result.seeds == [42, 43] and not torch.equal(a, b)
    # the second image is the one seed 43 gives alone: per-image noise generators, as A1111's CPU noise
    alone = pipeline.generate(small(seed=43, sampler_name="Euler a"))
    assert torch.allclose(result.latents[1], alone.latents[0], atol=1e-4)
    assert "Batch pos: 1" in result.infotexts[1] and "Seed: 43" in result.infotexts[1]


def test_batch_count_continues_the_seeds(pipeline):
    result = pipeline.generate(small(seed=10, n_iter=2, batch_size=1))
    assert result.seeds == [10, 11] and len(result.images) == 2


def test_random_seed_is_reported(pipeline):
    result = pipeline.generate(small(seed=-1, steps=1))
    seed = result.parameters["seed"]
    assert 0 <= seed < 2**32 and result.seeds == [seed]
    assert torch.equal(pixels(pipeline.generate(small(seed=seed, steps=1)))[0], pixels(result)[0])


def test_progress_is_reported_per_step(pipeline):
    seen = []
    pipeline.generate(small(n_iter=2), on_step=seen.append)
    assert [(p.step, p.steps, p.batch) for p in seen] == [(s, 4, b) for b in range(2) for s in range(1, 5)]
    assert seen[-1].fraction == 1.0 and seen[3].fraction == 0.5


def test_interrupt_returns_early(pipeline):
    stop = threading.Event()

    def on_step(progress):
        if progress.step == 2:
            stop.set()

    result = pipeline.generate(small(steps=10, n_iter=3), on_step=on_step, interrupt=stop)
    assert result.interrupted and len(result.images) == 1


def test_an_exception_from_the_callback_propagates_and_leaves_no_hooks(pipeline):
    before = hook_count(pipeline.model.unet)

    def boom(progress):
        raise KeyboardInterrupt("stop")

    with pytest.raises(KeyboardInterrupt):
        pipeline.generate(small(width=72), on_step=boom)
    assert hook_count(pipeline.model.unet) == before


def test_sizes_that_are_multiples_of_8_but_not_64(pipeline):
    result = pipeline.generate(small(width=72, height=88, steps=2))
    assert result.images[0].size == (72, 88)


@pytest.mark.parametrize(
    "overrides, field",
    [(dict(width=60), "width"), (dict(height=32), "height"), (dict(steps=0), "steps"),
     (dict(cfg_scale=float("nan")), "cfg_scale"), (dict(clip_skip=13), "clip_skip"),
     (dict(mask=Image.new("L", (64, 64))), "mask"), (dict(sampler_name="nope"), "sampler_name")],
)
def test_bad_requests_are_input_errors(pipeline, overrides, field):
    with pytest.raises(InputError) as info:
        pipeline.generate(small(**overrides))
    assert info.value.field == field


def test_long_and_uneven_prompts(pipeline):
    long_prompt = ", ".join(["a (very:1.2) detailed photo of a cat"] * 20)
    result = pipeline.generate(small(prompt=long_prompt, negative_prompt="", steps=1))
    assert torch.isfinite(result.latents).all()


# --- img2img -------------------------------------------------------------------------------------------------

def init_image() -> Image.Image:
    g = torch.Generator().manual_seed(11)
    smooth = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=g) * 2 - 1, size=(64, 64),
                                             mode="bilinear", align_corners=False)
    return to_pil(smooth)[0]


def test_img2img_strength_zero_returns_the_vae_round_trip(pipeline):
    image = init_image()
    vae = pipeline.model.vae
    init_latent = vae.encode(to_tensor(image, 64, 64))
    round_trip = np.asarray(to_pil(vae.decode(init_latent))[0]).astype(np.float32)
    result = pipeline.generate(small(init_images=[image], denoising_strength=0.0, steps=10))
    # A1111's rule still takes one step, at the smallest noise level (sigma 0.029): the latent barely moves
    drift = (result.latents - init_latent).abs()
    assert init_latent.std() > 0.5 and drift.mean() < 0.05 and drift.max() < 0.3
    changed = pipeline.generate(small(init_images=[image], denoising_strength=0.9, steps=10))
    assert (changed.latents - init_latent).abs().mean() > 30 * drift.mean()
    near = np.abs(pixels(result)[0].numpy() - round_trip).mean()
    far = np.abs(pixels(changed)[0].numpy() - round_trip).mean()
    assert near < 4.0 and far > 5 * near  # mean difference in 8-bit levels
    assert "Denoising strength: 0.0" in result.infotexts[0]


def test_img2img_is_reproducible_and_counts_its_steps(pipeline):
    seen = []
    a = pipeline.generate(small(init_images=[init_image()], denoising_strength=0.5, steps=10), on_step=seen.append)
    b = pipeline.generate(small(init_images=[init_image()], denoising_strength=0.5, steps=10))
    assert torch.equal(pixels(a)[0], pixels(b)[0])
    assert seen[-1].steps == 6 and len(seen) == 6  # t_enc = 5, then t_enc + 1 steps


def test_inpaint_keeps_the_unmasked_region(pipeline):
    image = init_image()
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (32, 0, 64, 64))  # repaint the right half
    vae = pipeline.model.vae
    init_latent = vae.encode(to_tensor(image, 64, 64))
    result = pipeline.generate(small(init_images=[image], mask=mask, mask_blur=0, denoising_strength=1.0))
    latents = result.latents[0]
    assert torch.allclose(latents[..., :4], init_latent[0, ..., :4], atol=1e-5)  # unmasked latent columns
    assert (latents[..., 4:] - init_latent[0, ..., 4:]).abs().mean() > 0.1
    out = pixels(result)[0].numpy()
    original = np.asarray(image).astype(np.float32)
    assert np.array_equal(out[:, :32], original[:, :32])  # A1111's overlay: unmasked pixels are the original's
    assert np.abs(out[:, 32:] - original[:, 32:]).mean() > 5
    assert "Mask blur: 0" in result.infotexts[0]
    inverted = pipeline.generate(small(init_images=[image], mask=mask, mask_blur=0, inpainting_mask_invert=True))
    assert np.array_equal(pixels(inverted)[0].numpy()[:, 32:], original[:, 32:])
