"""The generation service behind /sdapi/v1/txt2img and img2img: A1111 body in, A1111 response out.

It does for HTTP what scripts/controlnet.py does inside A1111, with the same core calls: units parsed by
`Unit.from_dict`, prepared by `lib_controlnet.generation.prepare_units` (preprocessing, model loading, every
failure naming unit and field), written into the infotext by `infotext_params`, and their detected maps
appended after the generated images unless `save_detected_map` is off or `control_net_no_detectmap` is set.
Everything up to the queue (body, images, units) is checked before the request waits for its turn.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from annotator.neural import runtime as annotator_runtime
from annotator.neural.weights import set_weights_folder
from lib_controlnet.enums import ResizeMode
from lib_controlnet.generation import GenerationInputs, detected_map_images, hook_effects, prepare_units
from lib_controlnet.models.cache import ModelCache
from lib_controlnet.models.registry import ModelRegistry
from lib_controlnet.preprocessors import Registry, ResultCache, default_cache, default_registry
from lib_controlnet.units.image_input import init_image_array
from lib_controlnet.units.infotext import infotext_params
from lib_controlnet.units.masked_crop import prepare_mask

from ..pipeline import Pipeline
from ..request import GenerationRequest, GenerationResult, StepProgress
from .alwayson import controlnet_units
from .checkpoints import LoadedCheckpoint, checkpoint_files
from .config import ServerConfig
from .encoding import png_base64
from .jobs import Job, JobQueue
from .payload import Translated, refuse_non_finite, translate
from .schemas import GenerationBody, Img2ImgBody, body_dict

logger = logging.getLogger("standalone.server")
VERSION = "standalone"


@dataclass
class Outcome:
    """One finished generation, before it is encoded for a client."""

    body: GenerationBody
    kind: str
    request: GenerationRequest
    plan: Translated
    result: GenerationResult
    maps: list[np.ndarray]  # detected maps to show after the images (empty when not appended)
    warnings: list[str]
    job: Job


class GenerationService:
    def __init__(self, config: ServerConfig, checkpoint: LoadedCheckpoint, *,
                 preprocessors: Registry | None = None, result_cache: ResultCache | None = None):
        self.config = config
        self.checkpoint = checkpoint
        self.pipeline = Pipeline(checkpoint.model)
        self.preprocessors = preprocessors or default_registry()
        self.result_cache = result_cache or default_cache()
        self.models = ModelRegistry(
            [*checkpoint.controlnet_dirs, config.option("control_net_models_path")],
            sort_by=config.option("control_net_models_sort_models_by"),
            name_filter=config.option("control_net_models_name_filter"),
        )
        self.model_cache = ModelCache(config.option("control_net_model_cache_size"))
        self.queue = JobQueue()
        # neural annotators: weights from the setting's folder, else <models dir>/annotators; computed on the
        # checkpoint's device; the same cache size as ControlNet models
        set_weights_folder(config.option("control_net_modules_path"), config.models_dir / "annotators",
                           data_path=config.models_dir.parent)
        annotator_runtime.configure(device=checkpoint.model.device,
                                    capacity=config.option("control_net_model_cache_size"))

    # --- what the routes ask ------------------------------------------------------------------------------
    @property
    def notice(self) -> str | None:
        return self.checkpoint.notice

    def unit_count(self) -> int:
        return self.config.option("control_net_unit_count")

    def checkpoint_title(self) -> str:
        model = self.checkpoint.model
        return f"{model.path.name} [{model.short_hash()}]"

    def sd_models(self) -> list[dict]:
        """A1111's /sdapi/v1/sd-models: the loaded checkpoint first (hash known), then the others on disk."""
        model = self.checkpoint.model
        loaded = {"title": self.checkpoint_title(), "model_name": model.name, "hash": model.short_hash(),
                  "sha256": None, "filename": str(model.path), "config": None}
        others = [{"title": p.name, "model_name": p.stem, "hash": None, "sha256": None, "filename": str(p),
                   "config": None} for p in checkpoint_files(self.config.models_dir) if p != model.path]
        return [loaded, *others]

    # --- a generation -------------------------------------------------------------------------------------
    def generate(self, body: GenerationBody) -> dict:
        """The A1111 API call: body in, `{"images", "parameters", "info", "warnings"}` out."""
        return self.response(self.run(body))

    def run(self, body: GenerationBody, *, units: Sequence | None = None,
            on_progress: Callable[[StepProgress], None] | None = None) -> Outcome:
        """Generate. `units` (Unit objects or unit dicts, as the panel's states hold them) replaces the body's
        alwayson_scripts; `on_progress` sees every sampling step of this job."""
        kind = "img2img" if isinstance(body, Img2ImgBody) else "txt2img"
        model = self.checkpoint.model
        plan = translate(body, checkpoint_names=(self.checkpoint_title(), model.name, model.path.name),
                         default_size=model.default_size)
        alwayson = body.alwayson_scripts if units is None else {"controlnet": {"args": list(units)}}
        parsed, notes = controlnet_units(alwayson, self.preprocessors, self.config.unit_slots)
        refuse_non_finite(body)  # after the units, whose own fields are named as a unit's
        request = GenerationRequest(**plan.fields)
        self.pipeline.validate(request)

        job = Job(kind, task_id=body.force_task_id or "")

        def on_step(progress: StepProgress) -> None:
            job.on_step(progress)
            if on_progress is not None:
                on_progress(progress)

        with self.queue.turn(job):
            prepared = []
            inputs = self._inputs(request, plan)
            if any(u.enabled for u in parsed):
                prepared = prepare_units(parsed, inputs, models=self.models,
                                         model_cache=self.model_cache, preprocessors=self.preprocessors,
                                         result_cache=self.result_cache)
            request.units = hook_effects(prepared)
            request.post_process = [fn for pu in prepared for fn in pu.post]
            request.initial_noise = [fn for pu in prepared for fn in pu.noise]
            request.extra_generation_params.update(infotext_params({pu.index: pu.unit for pu in prepared}))
            result = self.pipeline.generate(request, on_step=on_step, interrupt=job.interrupt)

        maps = [] if self.config.option("control_net_no_detectmap", plan.overrides) else list(
            detected_map_images(prepared, inputs))
        unit_notes = [note for pu in prepared for note in pu.warnings]
        return Outcome(body, kind, request, plan, result, maps,
                       [*result.warnings, *plan.warnings, *notes, *unit_notes], job)

    def _inputs(self, request: GenerationRequest, plan) -> GenerationInputs:
        init_image = mask = None
        if request.is_img2img:
            init_image = init_image_array(request.init_images[0])
            if request.mask is not None:
                # the A1111 adapter's preparation (A1111 1.10's), so units see the mask A1111 would give them
                mask = prepare_mask(np.asarray(request.mask), invert=request.inpainting_mask_invert,
                                    blur_x=request.mask_blur, blur_y=request.mask_blur)
        model = self.checkpoint.model
        hires_size = None
        if request.hires is not None:
            to_x, to_y, tx, ty = request.hires.target(request.width, request.height)
            hires_size = ((to_y - 8 * ty) // 8 * 8, (to_x - 8 * tx) // 8 * 8)  # the second pass's hint: 8x its latent
        return GenerationInputs(
            width=request.width,
            height=request.height,
            hires_size=hires_size,
            seed=(plan.seed + plan.subseed) & 0xFFFFFFFF,
            init_image=init_image,
            init_resize_mode=ResizeMode.RESIZE,  # this host's img2img always stretches the init image (0, Just resize)
            inpaint_mask=mask,
            base_unet=model.unet.state_dict(keep_vars=True),  # live parameters (Control-LoRA)
            base_id=model.short_hash(),
            generation_param_keys=tuple(request.extra_generation_params),
            ignore_noninpaint_mask=self.config.option("controlnet_ignore_noninpaint_mask", plan.overrides),
            family=model.family,
            inpaint_blur_sigma=int(self.config.option("control_net_inpaint_blur_sigma", plan.overrides)),
            prompt=request.prompt,
            has_lora=lambda name: False,  # this host applies no LoRA
        )

    def response(self, outcome: Outcome) -> dict:
        """A1111's response body: generated images (with their infotext) then the detected maps."""
        body, kind, request, plan, result = outcome.body, outcome.kind, outcome.request, outcome.plan, outcome.result
        maps, warnings, job = outcome.maps, outcome.warnings, outcome.job
        images = [png_base64(im, text) for im, text in zip(result.images, result.infotexts)]
        images += [png_base64(m) for m in maps]
        if body.send_images is False:
            images = []
        parameters = body_dict(body)
        if kind == "img2img" and not getattr(body, "include_init_images", False):
            parameters["init_images"] = None
            parameters["mask"] = None
        p = result.parameters
        n = len(result.images)
        info = {
            "prompt": request.prompt, "all_prompts": [request.prompt] * n,
            "negative_prompt": request.negative_prompt, "all_negative_prompts": [request.negative_prompt] * n,
            "seed": p["seed"], "all_seeds": result.seeds, "subseed": plan.subseed, "all_subseeds": [plan.subseed] * n,
            "subseed_strength": 0, "width": request.width, "height": request.height,
            "sampler_name": p["sampler_name"], "cfg_scale": request.cfg_scale, "steps": request.steps,
            "batch_size": request.batch_size, "restore_faces": False, "face_restoration_model": None,
            "sd_model_name": p["sd_model_name"], "sd_model_hash": p["sd_model_hash"], "sd_vae_name": None,
            "sd_vae_hash": None, "seed_resize_from_w": -1, "seed_resize_from_h": -1,
            "denoising_strength": p["denoising_strength"], "extra_generation_params": request.extra_generation_params,
            "index_of_first_image": 0, "infotexts": result.infotexts, "styles": [], "job_timestamp": job.timestamp,
            "clip_skip": request.clip_skip, "is_using_inpainting_conditioning": False, "version": VERSION,
            # beyond A1111's Processed.js():
            "scheduler": p["scheduler"], "interrupted": result.interrupted, "is_demo_model": result.is_demo,
            "detected_maps": len(maps), "warnings": warnings, "task_id": job.task_id,
        }
        return {"images": images, "parameters": parameters, "info": json.dumps(info, default=lambda o: None),
                "warnings": warnings}


__all__ = ["GenerationService", "Outcome"]
