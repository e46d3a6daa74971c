"""The scheduler-driven loop against hand-written k-diffusion samplers, and the step rules it follows."""

from __future__ import annotations

import math

import pytest
import torch

from lib_controlnet.errors import InputError
from standalone.samplers import KARRAS, UNIFORM, resolve_sampler, sampler_names
from standalone.sampling import InpaintBlend, LatentSpace, img2img_plan, sample, txt2img_plan

STEPS = 6


def sd15_sigmas() -> torch.Tensor:
    """σ(t) for t = 0..999 of SD1.5's schedule, computed here from its definition."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    return ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5


def uniform_sigmas(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    table = sd15_sigmas()
    t = torch.linspace(999, 0, n, dtype=torch.float64)
    low = t.floor().long().clamp(max=998)
    w = t - low
    sigma = table[low] * (1 - w) + table[low + 1] * w  # linear between the integer timesteps
    return t, torch.cat([sigma, sigma.new_zeros(1)])


def karras_sigmas(n: int, rho: float = 7.0) -> torch.Tensor:
    table = sd15_sigmas()
    lo, hi = table[0] ** (1 / rho), table[-1] ** (1 / rho)
    sigma = (hi + torch.linspace(0, 1, n, dtype=torch.float64) * (lo - hi)) ** rho
    return torch.cat([sigma, sigma.new_zeros(1)])


def eps_model(x_in: torch.Tensor) -> torch.Tensor:
    """A fixed non-linear stand-in for the UNet (depends on the scaled input only)."""
    return torch.tanh(1.3 * x_in) * 0.8 + 0.05 * x_in.roll(1, dims=-1)


def noise_for(seeds):
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    return torch.stack([torch.randn(4, 8, 8, generator=g) for g in gens]), gens


def run_ours(name, schedule="Automatic", seeds=(1, 2), record=None):
    spec, schedule = resolve_sampler(name, schedule)
    noise, gens = noise_for(seeds)

    def eps_fn(x_in, t, fraction):
        if record is not None:
            record.append((float(t), fraction))
        return eps_model(x_in)

    out, interrupted = sample(spec.make(schedule), LatentSpace(spec.variance_preserving), txt2img_plan(STEPS),
                              noise, eps_fn, generators=gens)
    assert not interrupted
    return out.double()


def test_euler_matches_a_hand_written_euler():
    calls = []
    ours = run_ours("Euler", record=calls)
    t, sigmas = uniform_sigmas(STEPS)
    noise, _ = noise_for((1, 2))
    x = noise.double() * sigmas[0]
    for i in range(STEPS):
        s = sigmas[i]
        denoised = x - s * eps_model(x / (s**2 + 1) ** 0.5)
        x = x + (x - denoised) / s * (sigmas[i + 1] - s)
    assert torch.allclose(ours, x, atol=2e-4, rtol=1e-4)
    # the UNet saw the uniform timesteps from 999 to 0, and ControlNet the reference's progress rule
    assert [c[0] for c in calls] == pytest.approx(t.tolist(), abs=1e-3)
    assert [c[1] for c in calls] == [i / STEPS for i in range(STEPS)]


def test_euler_ancestral_matches_hand_written_with_per_image_generators():
    ours = run_ours("Euler a", seeds=(5, 6))
    _, sigmas = uniform_sigmas(STEPS)
    noise, gens = noise_for((5, 6))
    x = noise.double() * sigmas[0]
    for i in range(STEPS):
        s, s_next = sigmas[i], sigmas[i + 1]
        denoised = x - s * eps_model(x / (s**2 + 1) ** 0.5)
        up = min(s_next, (s_next**2 * (s**2 - s_next**2) / s**2) ** 0.5)
        down = (s_next**2 - up**2) ** 0.5
        x = x + (x - denoised) / s * (down - s)
        fresh = torch.cat([torch.randn(1, 4, 8, 8, generator=g) for g in gens]).double()
        x = x + fresh * up
    assert torch.allclose(ours, x, atol=2e-4, rtol=1e-4)
    # image 2 of a batch does not depend on image 1's seed (each row has its own generator)
    alone = run_ours("Euler a", seeds=(9, 6))
    assert torch.allclose(alone[1], ours[1]) and not torch.allclose(alone[0], ours[0])


def test_dpmpp_2m_karras_matches_hand_written():
    ours = run_ours("DPM++ 2M Karras")
    sigmas = karras_sigmas(STEPS)
    noise, _ = noise_for((1, 2))
    x = noise.double() * sigmas[0]
    old = None
    for i in range(STEPS):
        s, s_next = sigmas[i], sigmas[i + 1]
        denoised = x - s * eps_model(x / (s**2 + 1) ** 0.5)
        if s_next == 0:
            x = denoised
        else:
            h = math.log(s / s_next)
            if old is None:
                x = (s_next / s) * x - math.expm1(-h) * denoised
            else:
                r = math.log(sigmas[i - 1] / s) / h
                x = (s_next / s) * x - math.expm1(-h) * ((1 + 1 / (2 * r)) * denoised - old / (2 * r))
        old = denoised
    assert torch.allclose(ours, x, atol=5e-4, rtol=1e-3)


@pytest.mark.parametrize("name", ["Euler", "Euler a", "DPM++ 2M"])
def test_latent_space_flag_matches_the_scheduler(name):
    """add_noise(x0, n) must be α·x0 + s·n as LatentSpace says, or the inpainting blend would be wrong."""
    spec, schedule = resolve_sampler(name)
    scheduler = spec.make(schedule)
    scheduler.set_timesteps(STEPS)
    scheduler.set_begin_index(2)
    x0, n = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    noisy = scheduler.add_noise(x0, n, scheduler.timesteps[2:3])
    space = LatentSpace(spec.variance_preserving)
    sigma = scheduler.sigmas[2]
    alpha, s = space.coefficients(sigma)
    assert torch.allclose(noisy, alpha * x0 + s * n, atol=1e-5)
    assert torch.allclose(space.x0(noisy, n, sigma), x0, atol=1e-4)


def test_img2img_step_rule_is_a1111s():
    assert img2img_plan(20, 0.5) == type(img2img_plan(20, 0.5))(20, 9)  # t_enc 10 -> 11 steps from index 9
    assert img2img_plan(20, 0.5).count == 11
    assert img2img_plan(20, 0.0).count == 1  # strength 0 still takes the last, smallest step
    assert img2img_plan(20, 1.0).count == 20  # min(strength, 0.999): 19 + 1 steps from the start
    assert img2img_plan(4, 0.75).count == 4


def test_inpaint_blend_keeps_the_init_latent_where_kept():
    spec, schedule = resolve_sampler("Euler")
    init = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    keep = torch.zeros(1, 1, 8, 8)
    keep[..., :4] = 1
    blend = InpaintBlend(init, keep)
    noise, gens = noise_for((1,))
    out, _ = sample(spec.make(schedule), LatentSpace(False), img2img_plan(STEPS, 0.8), noise,
                    lambda x, t, f: eps_model(x), init=init, blend=blend, generators=gens)
    # the last step lands on the blended x0 exactly where the mask keeps the init
    assert torch.allclose(out[..., :4], init[..., :4], atol=1e-5)
    assert not torch.allclose(out[..., 4:], init[..., 4:], atol=1e-2)


def test_sampler_names_and_schedules():
    assert resolve_sampler("DPM++ 2M Karras") == resolve_sampler("DPM++ 2M", KARRAS)
    assert resolve_sampler("dpm++ 2m")[1] == "Automatic"
    assert resolve_sampler("k_euler_a")[0].name == "Euler a"
    assert resolve_sampler(None)[0].name == "Euler"
    assert resolve_sampler("Euler", "karras")[1] == KARRAS
    for name in sampler_names():
        spec, schedule = resolve_sampler(name)
        spec.make(schedule)
    with pytest.raises(InputError, match="available"):
        resolve_sampler("UniPC")
    with pytest.raises(InputError, match="no 'Karras' schedule"):
        resolve_sampler("Euler a", KARRAS)[0].make(KARRAS)
    assert resolve_sampler("Euler", UNIFORM)[1] == UNIFORM
