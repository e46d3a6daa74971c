"""`Pipeline(model).generate(request, on_step=..., interrupt=...)`: prompt (and init image, mask, ControlNet
units, hires fix) to images with an SD1.x, SD2.x or SDXL model, one request at a time. The server, queue and
progress routes sit on top of this call.

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

from .checkpoint import FAMILY_NAMES
from .guidance import GuidedEps, PassConditioning
from .hires import hires_plan
from .hires_pass import HiresPass
from .images import latent_keep_mask, overlay, prepare_mask, to_pil, to_tensor
from .infotext import infotext
from .odd_sizes import odd_size_support
from .prompt_encoder import Conditioning, pad_to_same_length
from .request import GenerationRequest, GenerationResult, StepProgress
from .samplers import AUTOMATIC, resolve_sampler
from .sampling import InpaintBlend, LatentSpace, img2img_plan, sample, txt2img_plan
from .sd_model import StableDiffusionModel
from .sdxl_conditioning import sdxl_vector

LATENT_CHANNELS = 4
MAX_SEED = 2**32 - 1


# Images in one batch (sampled together); A1111's UI allows 8, its API does not say.
MAX_BATCH_SIZE = 64
# Mask blur in pixels (A1111's slider goes to 64); larger says nothing more about a mask of at most 4096 px.
MAX_MASK_BLUR = 256

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
        if not 1 <= r.batch_size <= MAX_BATCH_SIZE:
            # one batch is allocated at once: 10**6 images would take the server down, not fail
            bad("batch_size", f"batch_size must be between 1 and {MAX_BATCH_SIZE}, got {r.batch_size}")
        if r.n_iter < 1:
            bad("n_iter", f"n_iter must be at least 1, got {r.n_iter}")
        if not (math.isfinite(r.cfg_scale) and r.cfg_scale >= 0):
            bad("cfg_scale", f"cfg_scale must be a finite number >= 0, got {r.cfg_scale}")
        layers = self.model.prompts.model.config.num_hidden_layers
        if not 1 <= r.clip_skip <= layers:
            bad("clip_skip", f"clip_skip must be between 1 and {layers}, got {r.clip_skip}")
        if r.is_img2img and not 0.0 <= r.denoising_strength <= 1.0:
            bad("denoising_strength", f"denoising_strength must be in [0, 1], got {r.denoising_strength}")
        if r.mask is not None and not r.is_img2img:
            bad("mask", "a mask needs an init image (img2img)")
        if r.mask is not None and not 0 <= r.mask_blur <= MAX_MASK_BLUR:
            # a blur of 10**6 px would run for hours (or overflow OpenCV's kernel size)
            bad("mask_blur", f"mask_blur must be between 0 and {MAX_MASK_BLUR}, got {r.mask_blur}")
        if r.is_img2img and len(r.init_images) not in (1, r.batch_size):
            bad("init_images", f"give 1 init image or one per batch item ({r.batch_size}), not {len(r.init_images)}")
        if r.hires is not None:
            if r.is_img2img:
                bad("enable_hr", "hires fix is a txt2img pass; img2img has none")
            r.hires.validate()
            to_x, to_y, tx, ty = r.hires.target(r.width, r.height)
            if not (64 <= to_x - 8 * tx <= 8192 and 64 <= to_y - 8 * ty <= 8192):
                bad("hr_scale", f"the hires size {to_x}x{to_y} is outside 64..8192")

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
        hr_spec = hr_schedule = None
        if r.hires is not None:
            hr_spec, hr_schedule = resolve_sampler(r.hires.sampler_name or spec.name, r.hires.scheduler or schedule)
        seed = int(r.seed) if r.seed is not None and int(r.seed) >= 0 else random.randint(0, MAX_SEED)
        device, dtype = model.device, model.dtype
        batch, lat_h, lat_w = r.batch_size, r.height // 8, r.width // 8

        cond, uncond = self._conditioning(r.prompt, r.negative_prompt, r, r.width, r.height)

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
        hr_pass = self._hires_pass(r, rows) if r.hires is not None else None
        total_steps = plan.count + (hr_pass.plan.count if hr_pass is not None and hr_pass.plan else 0)
        space = LatentSpace(spec.variance_preserving)
        seeds: list[int] = []
        latents_out: list[torch.Tensor] = []
        images = []
        interrupted = False
        should_stop = interrupt.is_set if interrupt is not None else None
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

                def report(done: int, _total: int, _latents, b=b, offset=0):
                    if on_step is not None:
                        on_step(StepProgress(offset + done, total_steps, b, r.n_iter))

                latents, interrupted = sample(
                    spec.make(schedule), space, plan, noise.to(device, dtype), eps_fn,
                    init=init, blend=blend, generators=generators, on_step=report, should_stop=should_stop,
                    prediction_type=model.prediction_type,
                )
                if blend is not None:
                    latents = blend.apply(latents)  # A1111 also puts the init latent back after the last step
                if hr_pass is not None and not interrupted:
                    latents, interrupted = hr_pass.run(
                        latents, batch_seeds, hr_spec, hr_schedule, should_stop,
                        lambda done, total, lat, b=b: report(done, total, lat, b=b, offset=plan.count))
                seeds += batch_seeds
                latents_out.append(latents)
                images += self._decode(latents, r, pixel_mask)
                if interrupted:
                    break

        return self._result(r, images, seeds, seed, torch.cat(latents_out), interrupted, spec.name, schedule)

    # --- parts -------------------------------------------------------------------------------------------
    def _conditioning(self, prompt: str, negative_prompt: str, r: GenerationRequest, width: int, height: int):
        """(cond, uncond) `PassConditioning`s for one pass, expanded to the batch."""
        model, prompts = self.model, self.model.prompts
        c = prompts.encode_with_pooled([prompt], r.clip_skip)
        u = prompts.encode_with_pooled([negative_prompt], r.clip_skip)
        if model.family == "sdxl" and negative_prompt == "":
            # A1111 (sd_models_xl): an empty negative prompt is all zeros, pooled output included
            u = Conditioning(torch.zeros_like(u.context), torch.zeros_like(u.pooled))
        cond, uncond = c.context, u.context
        if cond.shape[1] != uncond.shape[1]:
            cond, uncond = pad_to_same_length(cond, uncond, prompts.encode([""], r.clip_skip))
        y_cond = y_uncond = None
        adm = model.adm_in_channels
        if adm is not None:
            size = (height, width)
            y_cond = sdxl_vector(c.pooled, adm, original=size, target=size)
            y_uncond = sdxl_vector(u.pooled, adm, original=size, target=size)
        batch = r.batch_size

        def rows(context, y):
            return PassConditioning(context.expand(batch, -1, -1),
                                    None if y is None else y.expand(batch, -1))

        return rows(cond, y_cond), rows(uncond, y_uncond)

    def _hires_pass(self, r: GenerationRequest, rows: CfgBatchRows) -> HiresPass:
        hr = r.hires
        to_x, to_y, tx, ty = hr.target(r.width, r.height)
        prompt = hr.prompt or r.prompt
        negative = hr.negative_prompt or r.negative_prompt
        cond, uncond = self._conditioning(prompt, negative, r, to_x, to_y)
        eps_fn = GuidedEps(self.model.unet, cond, uncond, r.cfg_scale, rows, hires=True)
        return HiresPass(self.model, hr, (to_x, to_y, tx, ty), eps_fn, hires_plan(hr.steps or r.steps,
                                                                                  hr.denoising_strength))

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
            **(r.hires.infotext(sampler) if r.hires is not None else {}),
            "Clip skip": r.clip_skip if r.clip_skip > 1 else None,
            "Mask blur": r.mask_blur if r.mask is not None else None,
            "Batch size": r.batch_size if r.batch_size > 1 else None,
            "Demo model": model.demo_infotext,
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
        if r.hires is not None:
            to_x, to_y, tx, ty = r.hires.target(r.width, r.height)
            parameters.update(enable_hr=True, hr_upscale_to_x=to_x - 8 * tx, hr_upscale_to_y=to_y - 8 * ty,
                              denoising_strength=r.hires.denoising_strength)
        warnings = [model.notice] if model.notice else []
        if r.clip_skip > 1 and not model.prompts.uses_clip_skip:
            warnings.append(f"CLIP skip ({r.clip_skip}) does not apply to {FAMILY_NAMES[model.family]} text encoders "
                            "(as in A1111): each uses its family's fixed layer")
        return GenerationResult(
            images=images, seeds=seeds, infotexts=texts, parameters=parameters, latents=latents,
            interrupted=interrupted, is_demo=model.is_demo, warnings=warnings,
        )
