"""An A1111 txt2img/img2img body -> the pipeline's GenerationRequest fields, refusing what would change the image
without being honoured and noting what is ignored.

Refused (4xx): fields that ask for something this host cannot do and that would make the image not what was asked
(a selectable script, another checkpoint, an upscaler it does not have, a first-pass image). Width and height
default to the checkpoint's native size (512, 768 for v-prediction SD2.x, 1024 for SDXL) where A1111's API
would use 512 for every model. Noted in the response's "warnings": fields A1111 honours
that the standalone host ignores but that leave the request's image meaningful (face restoration, styles...).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException
from PIL import Image

from lib_controlnet import settings as cn_settings
from lib_controlnet.api.images import open_image
from lib_controlnet.errors import GENERATION, ControlNetError, InputError, NotFoundError

from ..hires import HiresFix
from ..samplers import resolve_sampler
from .schemas import GenerationBody, Img2ImgBody, Txt2ImgBody, body_dict

MAX_SEED = 2**32 - 1
CLIP_SKIP_OPTION = "CLIP_stop_at_last_layers"  # A1111's option name for clip skip
CHECKPOINT_OPTION = "sd_model_checkpoint"
SAME_CHECKPOINT = "Use same checkpoint"  # A1111's hr_checkpoint_name for "no switch"

# field -> (is it asking for something this host ignores?, what the response says then)
IGNORED_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "styles": (bool, "styles are not applied by the standalone host"),
    "subseed_strength": (bool, "variation seeds (subseed_strength) are not supported; the main seed alone was used"),
    "restore_faces": (bool, "face restoration is not available in the standalone host"),
    "tiling": (bool, "tiling is not supported by the standalone host"),
    "refiner_checkpoint": (bool, "refiner checkpoints are not supported; the whole generation used one checkpoint"),
    "infotext": (bool, "the 'infotext' field is not applied by the standalone host; send the fields themselves"),
    "resize_mode": (bool, "img2img resize_mode other than 0 (Just resize) is not supported; the init image was "
                          "resized"),
    "image_cfg_scale": (lambda v: v is not None, "image_cfg_scale is for instruct-pix2pix models, which are not "
                                                 "supported"),
    "initial_noise_multiplier": (lambda v: v not in (None, 1, 1.0), "initial_noise_multiplier is not supported"),
}
# Only worth a note when there is a mask (A1111's defaults are 'fill' and 'Only masked').
IGNORED_WITH_MASK: dict[str, tuple[Callable[[Any], bool], str]] = {
    "inpainting_fill": (lambda v: v not in (None, 1), "masked content (inpainting_fill) other than 1 ('original') "
                                                     "is not supported; the init image's content was kept under "
                                                     "the mask"),
    "inpaint_full_res": (bool, "inpaint area 'Only masked' (inpaint_full_res) is not supported; the whole picture "
                               "was inpainted"),
}


@dataclass
class Translated:
    fields: dict[str, Any]  # GenerationRequest keyword arguments (no units)
    seed: int
    subseed: int
    clip_skip: int
    overrides: dict[str, Any]  # ControlNet settings from override_settings
    warnings: list[str] = field(default_factory=list)


def _or(value, default):
    return default if value is None else value


def refuse_non_finite(body: GenerationBody) -> None:
    """Python's JSON reader takes NaN and Infinity, which no field means and no JSON answer can carry: the echoed
    request ("parameters") then failed to render, a 500 after the whole generation (tools/fuzz_api.py found
    `eta: -Infinity`). Refused first, naming the field, wherever in the body it is."""
    def walk(value, path: str) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"{path} must be a finite number, got {value}", field=path, subject=GENERATION)
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]")

    walk(body_dict(body), "")


def translate(body: GenerationBody, *, checkpoint_names: tuple[str, ...] = (), default_size: int = 512) -> Translated:
    is_img2img = isinstance(body, Img2ImgBody)
    if body.script_name:
        raise HTTPException(status_code=422, detail=f"Script '{body.script_name}' not found")
    if isinstance(body, Txt2ImgBody) and body.firstpass_image:
        raise InputError("firstpass_image (a given first-pass image for hires fix) is not supported by the "
                         "standalone host; send enable_hr without it", field="firstpass_image",
                         subject=GENERATION)

    checks = dict(IGNORED_FIELDS, **(IGNORED_WITH_MASK if is_img2img and body.mask else {}))
    warnings = [note for name, (asks, note) in checks.items() if hasattr(body, name) and asks(getattr(body, name))]

    overrides = dict(body.override_settings or {})
    wanted = overrides.pop(CHECKPOINT_OPTION, None)
    if wanted and wanted not in checkpoint_names:
        raise NotFoundError(f"checkpoint {wanted!r} is not loaded; the standalone host serves one checkpoint "
                            f"({checkpoint_names[0] if checkpoint_names else 'none'}), chosen at start (--ckpt)",
                            field=f"override_settings.{CHECKPOINT_OPTION}", subject=GENERATION)
    clip_skip = overrides.pop(CLIP_SKIP_OPTION, 1)
    if isinstance(clip_skip, bool) or not isinstance(clip_skip, int):
        raise InputError(f"{CLIP_SKIP_OPTION} must be a whole number, got {clip_skip!r}",
                         field=f"override_settings.{CLIP_SKIP_OPTION}", subject=GENERATION)
    controlnet = {k: v for k, v in overrides.items() if k in cn_settings.SETTINGS_BY_KEY}
    warnings += [f"setting '{k}' is not used by the standalone host" for k in sorted(overrides) if k not in controlnet]

    seed = _or(body.seed, -1)
    seed = int(seed) if seed >= 0 else random.randint(0, MAX_SEED)
    subseed = _or(body.subseed, -1)
    subseed = int(subseed) if subseed >= 0 else 0  # only ControlNet's random preprocessors read it here

    fields: dict[str, Any] = dict(
        prompt=_or(body.prompt, ""),
        negative_prompt=_or(body.negative_prompt, ""),
        width=_or(body.width, default_size),
        height=_or(body.height, default_size),
        steps=_or(body.steps, 50),
        cfg_scale=float(_or(body.cfg_scale, 7.0)),
        sampler_name=body.sampler_name or body.sampler_index or "Euler",
        scheduler=body.scheduler or "Automatic",
        seed=seed,
        batch_size=_or(body.batch_size, 1),
        n_iter=_or(body.n_iter, 1),
        clip_skip=clip_skip,
    )
    if is_img2img:
        fields.update(_img2img_fields(body))
    elif body.enable_hr:
        fields["hires"] = _hires(body, checkpoint_names)
    return Translated(fields, seed, subseed, clip_skip, controlnet, warnings)


def _img2img_fields(body: Img2ImgBody) -> dict[str, Any]:
    if not body.init_images:
        # A1111 answers 404 "Init image not found" for a missing list; an empty one is the same mistake
        raise HTTPException(status_code=404, detail="Init image not found")
    images = [_image(text, f"init_images[{i}]") for i, text in enumerate(body.init_images)]
    mask = _image(body.mask, "mask") if body.mask else None
    blur = body.mask_blur if body.mask_blur is not None else max(_or(body.mask_blur_x, 4), _or(body.mask_blur_y, 4))
    return dict(
        init_images=images,
        denoising_strength=float(_or(body.denoising_strength, 0.75)),
        mask=mask,
        mask_blur=int(blur),
        inpainting_mask_invert=bool(body.inpainting_mask_invert),
    )


def _image(text, field: str) -> Image.Image:
    try:
        image = open_image(text, field)
    except ControlNetError as exc:
        raise exc.about(GENERATION) from None  # init_images and mask are A1111's fields, not ControlNet's
    return image.convert("RGBA") if image.mode in ("RGBA", "LA", "PA") else image.convert("RGB")


def _hires(body: Txt2ImgBody, checkpoint_names: tuple[str, ...]) -> HiresFix:
    wanted = body.hr_checkpoint_name
    if wanted and wanted != SAME_CHECKPOINT and wanted not in checkpoint_names:
        raise NotFoundError(f"checkpoint {wanted!r} is not loaded; the standalone host runs hires fix with its one "
                            "checkpoint", field="hr_checkpoint_name", subject=GENERATION)
    if body.hr_sampler_name:
        try:
            resolve_sampler(body.hr_sampler_name, body.hr_scheduler)
        except InputError as e:
            raise InputError(e.message, field="hr_sampler_name", subject=GENERATION) from None
    hires = HiresFix(
        scale=float(_or(body.hr_scale, 2.0)),
        resize_x=int(_or(body.hr_resize_x, 0)),
        resize_y=int(_or(body.hr_resize_y, 0)),
        upscaler=body.hr_upscaler or None,
        steps=int(_or(body.hr_second_pass_steps, 0)),
        denoising_strength=float(_or(body.denoising_strength, 0.75)),
        sampler_name=body.hr_sampler_name or None,
        scheduler=body.hr_scheduler or None,
        prompt=_or(body.hr_prompt, ""),
        negative_prompt=_or(body.hr_negative_prompt, ""),
    )
    hires.validate()
    return hires
