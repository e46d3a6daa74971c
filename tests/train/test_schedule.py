"""The noise schedule the trainer adds noise with is SD's, as diffusers' DDPMScheduler computes it."""

import pytest
import torch

from lib_controlnet.train.schedule import NoiseSchedule, sd_alphas_cumprod


def test_sd_schedule_matches_diffusers_and_add_noise_is_q_sample():
    from diffusers import DDPMScheduler

    theirs = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                           beta_schedule="scaled_linear")
    ours = NoiseSchedule.from_checkpoint(None)
    assert torch.allclose(ours.alphas_cumprod.float(), theirs.alphas_cumprod, rtol=1e-6, atol=1e-7)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    t = torch.tensor([0, 500, 999])
    assert torch.allclose(ours.add_noise(x0, noise, t), theirs.add_noise(x0, noise, t), atol=1e-5)


def test_a_checkpoints_own_schedule_is_used_and_checked():
    own = sd_alphas_cumprod() ** 1.1
    assert torch.equal(NoiseSchedule.from_checkpoint({"alphas_cumprod": own}).alphas_cumprod, own)
    with pytest.raises(ValueError, match="decreasing"):
        NoiseSchedule(torch.linspace(0.1, 0.9, 1000))
