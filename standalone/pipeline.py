"""`Pipeline(model).generate(request, on_step=..., interrupt=...)`: prompt (and init image, mask, ControlNet
units) to images, one request at a time. The server, queue and progress routes sit on top of this call.

Per batch of `batch_size` images: noise from one CPU generator per image seeded with seed, seed+1, ... (as
A1111 with its default CPU noise source; ancestral samplers keep drawing from the same generators), the
prompts encoded once, one UNet call per step with cond and uncond rows together, ControlNet units applied by
the core's `ControlHook` for the whole generation and removed afterwards whatever happens.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from contextlib import ExitStack

import torch

from lib_controlnet import ControlHook, InputError
from lib_controlnet.errors import GENERATION
from lib_controlnet.hook.cfg_rows import CfgBatchRows

from .guidance import GuidedEps
from .images import latent_keep_mask, overlay, prepare_mask, to_pil, to_tensor
from .infotext import infotext
from .odd_sizes import odd_size_support
from .prompt_encoder import pad_to_same_length
from .request import GenerationRequest, GenerationResult, StepProgress
from .samplers import AUTOMATIC, resolve_sampler
from .sampling import InpaintBlend, LatentSpace, img2img_plan, sample, txt2img_plan
from .sd_model import StableDiffusionModel

LATENT_CHANNELS = 4
MAX_SEED = 2**32 - 1


class Pipeline:
    def __init__(self, model: StableDiffusionModel):
        self.model = model

    # --- checks ------------------------------------------------------------------------------------------
    def validate(self, r: GenerationRequest) -> None:
        def bad(field: str, message: str):
            raise InputError(message, field=field, subject=GENERATION)

        for name in ("width", "height"):
            value = getattr(r, name)
            if not isinstance(value, int) or value % 8 or not 64 <= value <= 4096:
                bad(name, f"{name} must be a multiple of 8 between 64 and 4096, got {value!r}")
        if not 1 <= r.steps <= 1000:
            bad("steps", f"steps must be between 1 and 1000, got {r.steps}")
        if r.batch_size < 1 or r.n_iter < 1:
            bad("batch_size", "batch_size and n_iter must be at least 1")
        if not (math.isfinite(r.cfg_scale) and r.cfg_scale >= 0):
            bad("cfg_scale", f"cfg_scale must be a finite number >= 0, got {r.cfg_scale}")
        layers = self.model.prompts.model.config.num_hidden_layers
        if not 1 <= r.clip_skip <= layers:
            bad("clip_skip", f"clip_skip must be between 1 and {layers}, got {r.clip_skip}")
        if r.is_img2img and not 0.0 <= r.denoising_strength <= 1.0:
            bad("denoising_strength", f"denoising_strength must be in [0, 1], got {r.denoising_strength}")
        if r.mask is not None and not r.is_img2img:
            bad("mask", "a mask needs an init image (img2img)")
        if r.is_img2img and len(r.init_images) not in (1, r.batch_size):
            bad("init_images", f"give 1 init image or one per batch item ({r.batch_size}), not {len(r.init_images)}")

    # --- the call ----------------------------------------------------------------------------------------
    def generate(
        self,
        request: GenerationRequest,
        *,
        on_step: Callable[[StepProgress], None] | None = None,
        interrupt=None,
    ) -> GenerationResult:
        """Run a request. `on_step` may raise to abort (the exception propagates, nothing stays hooked);
        `interrupt` (anything with `is_set()`, e.g. threading.Event) stops at the next step and returns the
        images as they are then, with `interrupted=True`."""
        r = request
        self.validate(r)
        model = self.model
        spec, schedule = resolve_sampler(r.sampler_name, r.scheduler)
        seed = int(r.seed) if r.seed is not None and int(r.seed) >= 0 else random.randint(0, MAX_SEED)
        device, dtype = model.device, model.dtype
        batch, lat_h, lat_w = r.batch_size, r.height // 8, r.width // 8

        cond, uncond = self._encode_prompts(r)
        cond, uncond = cond.expand(batch, -1, -1), uncond.expand(batch, -1, -1)

        init = blend = pixel_mask = None
        if r.is_img2img:
            pixels = torch.cat([to_tensor(im, r.width, r.height) for im in r.init_images]).to(device)
            init = model.vae.encode(pixels).expand(batch, -1, -1, -1).to(dtype)
            if r.mask is not None:
                pixel_mask = prepare_mask(r.mask, r.width, r.height, blur=r.mask_blur,
                                          invert=r.inpainting_mask_invert)
                keep = latent_keep_mask(pixel_mask, lat_w, lat_h).to(device, dtype)
                blend = InpaintBlend(init, keep)
        plan = img2img_plan(r.steps, r.denoising_strength) if r.is_img2img else txt2img_plan(r.steps)

        rows = CfgBatchRows()
        eps_fn = GuidedEps(model.unet, cond, uncond, r.cfg_scale, rows)
        space = LatentSpace(spec.variance_preserving)
        seeds: list[int] = []
        latents_out: list[torch.Tensor] = []
        images = []
        interrupted = False
        with ExitStack() as stack:
            stack.enter_context(odd_size_support(model.unet))
            if r.units:
                hook = ControlHook(model.unet, r.units, rows, family=model.family, host=model.host_info())
                stack.enter_context(hook.applied())
            stack.callback(rows.reset)
            for b in range(r.n_iter):
                batch_seeds = [(seed + b * batch + k) % (MAX_SEED + 1) for k in range(batch)]
                generators = [torch.Generator("cpu").manual_seed(s) for s in batch_seeds]
                noise = torch.stack([torch.randn(LATENT_CHANNELS, lat_h, lat_w, generator=g) for g in generators])
                for modify in r.initial_noise:  # e.g. inpaint_only+lama seeds the noise with its fill
                    noise = modify(noise, model.host_info())

                def report(done: int, total: int, _latents, b=b):
                    if on_step is not None:
                        on_step(StepProgress(done, total, b, r.n_iter))

                latents, interrupted = sample(
                    spec.make(schedule), space, plan, noise.to(device, dtype), eps_fn,
                    init=init, blend=blend, generators=generators, on_step=report,
                    should_stop=(interrupt.is_set if interrupt is not None else None),
                )
                if blend is not None:
                    latents = blend.apply(latents)  # A1111 also puts the init latent back after the last step
                seeds += batch_seeds
                latents_out.append(latents)
                images += self._decode(latents, r, pixel_mask)
                if interrupted:
                    break

        return self._result(r, images, seeds, seed, torch.cat(latents_out), interrupted, spec.name, schedule)

    # --- parts -------------------------------------------------------------------------------------------
    def _encode_prompts(self, r: GenerationRequest) -> tuple[torch.Tensor, torch.Tensor]:
        prompts = self.model.prompts
        cond = prompts.encode([r.prompt], r.clip_skip)
        uncond = prompts.encode([r.negative_prompt], r.clip_skip)
        if cond.shape[1] != uncond.shape[1]:
            cond, uncond = pad_to_same_length(cond, uncond, prompts.encode([""], r.clip_skip))
        return cond, uncond

    def _decode(self, latents: torch.Tensor, r: GenerationRequest, pixel_mask) -> list:
        pixels = self.model.vae.decode(latents.float())
        if r.post_process:  # the units' pixel post-processes, on [0, 1] images as A1111 hands them over
            images01 = ((pixels.float() + 1) / 2).clamp(0, 1)
            for i in range(images01.shape[0]):
                for fn in r.post_process:
                    images01[i] = fn(images01[i], i)
            pixels = images01 * 2 - 1
        decoded = to_pil(pixels)
        if pixel_mask is not None:
            inits = r.init_images if len(r.init_images) == len(decoded) else r.init_images * len(decoded)
            decoded = [overlay(im, init, pixel_mask) for im, init in zip(decoded, inits)]
        return decoded

    def _result(self, r, images, seeds, seed, latents, interrupted, sampler, schedule) -> GenerationResult:
        model = self.model
        params = {
            "Steps": r.steps,
            "Sampler": sampler,
            "Schedule type": schedule if schedule != AUTOMATIC else None,
            "CFG scale": r.cfg_scale,
            "Seed": None,  # per image, below
            "Size": f"{r.width}x{r.height}",
            "Model hash": model.short_hash(),
            "Model": model.name,
            "Denoising strength": r.denoising_strength if r.is_img2img else None,
            "Clip skip": r.clip_skip if r.clip_skip > 1 else None,
            "Mask blur": r.mask_blur if r.mask is not None else None,
            "Batch size": r.batch_size if r.batch_size > 1 else None,
            "Demo model": "random weights - the image is noise, not a Stable Diffusion result" if model.is_demo
            else None,
            **r.extra_generation_params,
        }
        texts = []
        for i, s in enumerate(seeds):
            per_image = dict(params, Seed=s)
            if r.batch_size > 1:
                per_image["Batch pos"] = i % r.batch_size
            texts.append(infotext(r.prompt, r.negative_prompt, per_image))
        parameters = {
            "prompt": r.prompt, "negative_prompt": r.negative_prompt, "seed": seed, "all_seeds": seeds,
            "width": r.width, "height": r.height, "steps": r.steps, "cfg_scale": r.cfg_scale,
            "sampler_name": sampler, "scheduler": schedule, "batch_size": r.batch_size, "n_iter": r.n_iter,
            "clip_skip": r.clip_skip, "denoising_strength": r.denoising_strength if r.is_img2img else None,
            "sd_model_name": model.name, "sd_model_hash": model.short_hash(), "is_demo_model": model.is_demo,
        }
        return GenerationResult(
            images=images, seeds=seeds, infotexts=texts, parameters=parameters, latents=latents,
            interrupted=interrupted, is_demo=model.is_demo, warnings=[model.notice] if model.notice else [],
        )
