"""Request and response bodies with A1111 1.10's field names, types and defaults (modules/api/models.py).

A1111 generates its request models from the processing classes' __init__ signatures: every field optional,
unknown keys ignored. The fields the standalone host reads are declared here; the others A1111 knows are
accepted and either ignored (when they cannot change the image) or answered by `payload` (when they would).
pydantic 1 (A1111's) and 2 both accept these models.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class _Lenient(BaseModel):
    class Config:
        extra = "ignore"  # A1111's generated models ignore unknown keys too


class GenerationBody(_Lenient):
    prompt: str | None = ""
    negative_prompt: str | None = ""
    styles: list[str] | None = None
    seed: int | None = -1
    subseed: int | None = -1
    subseed_strength: float | None = 0
    seed_resize_from_h: int | None = -1
    seed_resize_from_w: int | None = -1
    sampler_name: str | None = None
    sampler_index: str | None = "Euler"
    scheduler: str | None = None
    batch_size: int | None = 1
    n_iter: int | None = 1
    steps: int | None = 50
    cfg_scale: float | None = 7.0
    width: int | None = None  # None: the checkpoint's native size (A1111: 512)
    height: int | None = None
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool | None = False
    do_not_save_grid: bool | None = False
    eta: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool | None = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool | None = False
    comments: dict[str, Any] | None = None
    script_name: str | None = None
    script_args: list | None = []
    send_images: bool | None = True
    save_images: bool | None = False
    alwayson_scripts: dict[str, Any] | None = {}
    force_task_id: str | None = None
    infotext: str | None = None


class Txt2ImgBody(GenerationBody):
    enable_hr: bool | None = False
    denoising_strength: float | None = 0.75  # used by the hires pass only
    firstphase_width: int | None = 0
    firstphase_height: int | None = 0
    hr_scale: float | None = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int | None = 0
    hr_resize_x: int | None = 0
    hr_resize_y: int | None = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str | None = ""
    hr_negative_prompt: str | None = ""
    firstpass_image: str | None = None


class Img2ImgBody(GenerationBody):
    init_images: list | None = None
    resize_mode: int | None = 0
    denoising_strength: float | None = 0.75
    image_cfg_scale: float | None = None
    mask: str | None = None
    mask_blur_x: int | None = 4
    mask_blur_y: int | None = 4
    mask_blur: int | None = None
    mask_round: bool | None = True
    inpainting_fill: int | None = 0
    inpaint_full_res: bool | None = True
    inpaint_full_res_padding: int | None = 0
    inpainting_mask_invert: int | None = 0
    initial_noise_multiplier: float | None = None
    latent_mask: str | None = None
    include_init_images: bool | None = False


def body_dict(body: BaseModel) -> dict[str, Any]:
    """`vars(request)` as A1111 echoes it in "parameters" (pydantic 1 and 2)."""
    return body.model_dump() if hasattr(body, "model_dump") else body.dict()
