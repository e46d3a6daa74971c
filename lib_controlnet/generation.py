"""From user units to bound units: everything a host does once per generation before sampling.

Per enabled unit, in order: find the preprocessor and the model, read the input images (or the img2img
init image), crop them like A1111's "Only masked" when asked, run the preprocessor at its (pixel-perfect)
resolution, fit the map to the hint size (and the hires size), load the model through the cache. Any
failure stops the generation with an error naming the unit and the field: a unit is never dropped.

Both hosts call `prepare_units`; neither knows how a unit becomes tensors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .controls import ControlRequest, NoiseModifier, PixelPost
from .controls import build as build_controls
from .enums import HiResFixOption, ResizeMode
from .errors import ControlNetError, IncompatibleModelError, InputError
from .hook.effect import Effect
from .kinds import unit_class
from .kinds.ip_adapter_presets import auto_module, lora_note
from .models.cache import ModelCache
from .models.headers import cached_header
from .models.registry import ModelRegistry
from .preprocessors import Registry, ResultCache, resolve_params, run_preprocessor
from .preprocessors.params import unused_resolution_note
from .units.hint_size import fit_detected_map, hint_size, hint_tensor, pixel_perfect_resolution, stack_hints
from .units.image_input import control_input, decode_region_mask, decode_unit_images
from .units.ipadapter_input import decode_ipadapter_input, face_embedding
from .units.masked_crop import crop_control_image, wants_masked_crop
from .units.unit import Unit, uses_clip

logger = logging.getLogger(__name__)


@dataclass
class GenerationInputs:
    """What the host knows about the generation that the units need."""

    width: int
    height: int
    seed: int = 0  # seeds random preprocessors (shuffle): the reference uses (seed + subseed) & 0xFFFFFFFF
    init_image: np.ndarray | None = None  # img2img: HxWx3 uint8, the input of units without their own image
    # img2img: how the host fitted the init image to the output (A1111's p.resize_mode, via
    # ResizeMode.from_img2img). A unit reading the init image fits it the same way, whatever its own resize mode
    # says (the reference's rule), so its control lines up with the latent made from that image; None: the unit's
    init_resize_mode: ResizeMode | None = None
    inpaint_mask: np.ndarray | None = None  # img2img: the prepared A1111 mask, HxW uint8
    inpaint_only_masked: bool = False
    inpaint_padding: int = 32
    hires_size: tuple[int, int] | None = None  # (h, w) of the hires-fix pass's hint, when hires fix is on
    # the host UNet's state dict, ldm names, for "difference" ControlNets and Control-LoRAs; pass
    # `unet.state_dict(keep_vars=True)`: Control-LoRAs hold its parameters weakly and read them at call time
    base_unet: Mapping[str, torch.Tensor] | None = None
    base_id: object = None  # identifies the host checkpoint (its hash) for the model cache
    generation_param_keys: Sequence[str] = ()  # infotext keys so far (an upscale script asks for the crop)
    ignore_noninpaint_mask: bool = False  # the controlnet_ignore_noninpaint_mask setting
    family: str | None = None  # the checkpoint's family, for controls that depend on it
    inpaint_blur_sigma: int = 7  # the control_net_inpaint_blur_sigma setting (inpaint_only's final blend)
    empty_prompts: bool = False  # prompt and negative prompt both empty (Revision then ignores the text)
    prompt: str = ""  # the positive prompt(s), joined: FaceID units say when their LoRA is not loaded
    # whether the host has a LoRA of a name (FaceID's published LoRA); None: it cannot tell
    has_lora: Callable[[str], bool] | None = None


@dataclass
class PreparedUnit:
    index: int  # the unit's position as the caller sent it (UI tab / API list index)
    unit: Unit  # with the slider values actually used, for infotext
    effects: list[Effect]  # what the hook applies: the model's unit first (if any), then its controls
    detected_maps: list[np.ndarray]  # what the user is shown / gets back (hires map first, as the reference)
    warnings: list[str] = field(default_factory=list)  # accepted, but worth a word ("ControlNet unit i: ...")
    post: list[PixelPost] = field(default_factory=list)  # run by the host on each decoded image
    noise: list[NoiseModifier] = field(default_factory=list)  # run by the host on the first pass's noise
    resize_mode: ResizeMode | None = None  # how its maps were fitted, when not by the unit's own resize mode

    @property
    def fit_mode(self):
        """The resize mode its maps were fitted by: the host's img2img mode for a unit that read the init image."""
        return self.unit.resize_mode if self.resize_mode is None else self.resize_mode

    @property
    def bound(self) -> Effect:
        """The unit's main effect (the BoundUnit of a ControlNet unit)."""
        return self.effects[0]


def hook_effects(prepared: Sequence[PreparedUnit]) -> list[Effect]:
    """Every effect of every prepared unit, in unit order: what a host hands to ControlHook."""
    return [effect for pu in prepared for effect in pu.effects]


def initial_noise(prepared: Sequence[PreparedUnit], noise: torch.Tensor, host) -> torch.Tensor:
    """The first pass's initial noise (unit variance) after every unit's noise modifiers, in unit order."""
    for pu in prepared:
        for fn in pu.noise:
            noise = fn(noise, host)
    return noise


def post_process(prepared: Sequence[PreparedUnit], image: torch.Tensor, index: int) -> torch.Tensor:
    """A decoded image [3, H, W] in [0, 1] after every unit's pixel post-processes, in unit order."""
    for pu in prepared:
        for fn in pu.post:
            image = fn(image, index)
    return image


def prepare_units(
    units: Sequence[Unit],
    inputs: GenerationInputs,
    *,
    models: ModelRegistry,
    model_cache: ModelCache,
    preprocessors: Registry,
    result_cache: ResultCache | None = None,
) -> list[PreparedUnit]:
    prepared = []
    for index, unit in enumerate(units):
        if not unit.enabled:
            continue
        try:
            prepared.append(_prepare(index, unit, inputs, models, model_cache, preprocessors, result_cache))
            _link_instant_id(prepared)
        except ControlNetError as exc:
            raise exc.at(unit=index) from None
    return prepared


def _link_instant_id(prepared: list[PreparedUnit]) -> None:
    """An InstantID ControlNet (its file name says "instant_id", as in the reference: its keys are a plain
    SDXL ControlNet's) sees the face tokens of the IP-Adapter unit right before it instead of the prompt."""
    pu = prepared[-1]
    main = pu.effects[0] if pu.effects else None
    if not hasattr(main, "context_override") or "instant_id" not in str(pu.unit.model).lower():
        return
    before = prepared[-2].effects[0] if len(prepared) > 1 and prepared[-2].effects else None
    if not hasattr(before, "image_context"):
        raise InputError("an InstantID ControlNet must follow an IP-Adapter unit (instant_id_face_embedding with "
                         "the InstantID ip-adapter) whose face tokens it reads", field="model")
    main.context_override = before.image_context


def check_unit_setup(unit: Unit, *, models: ModelRegistry, preprocessors: Registry, family: str | None = None):
    """What can be checked of an enabled unit before any image is read: a preprocessor that generations can
    use, and a model file that exists (and, with the checkpoint's `family`, whose header says it fits). Returns
    (preprocessor, model entry); InputError/NotFoundError/IncompatibleModelError name the field (the caller
    adds the unit)."""
    preprocessor = preprocessors.get(unit.module)
    if preprocessor is None:
        raise InputError(f"module {unit.module!r} is not a known preprocessor", field="module")
    if preprocessor.model_free:
        return preprocessor, None  # its control is the whole unit: any model the unit names is unused
    if not unit.has_model:
        raise InputError("no ControlNet model selected", field="model")
    try:
        entry = models.resolve(unit.model)
    except ControlNetError as exc:
        raise exc.at(field="model") from None
    header = cached_header(entry.path)
    check_family(entry.name, header[0] if header else None, family)
    return preprocessor, entry


def check_family(name: str, model_family: str | None, family: str | None) -> None:
    """A model of another SD family than the checkpoint's fails before anything runs (unknown: allowed)."""
    if model_family and family and model_family != family:
        raise IncompatibleModelError(f"{name} is made for {model_family} but the checkpoint is {family}",
                                     field="model")


NO_IMAGE = "the unit is enabled but has no input image"


def check_unit_image(unit: Unit, *, has_init_image: bool) -> None:
    """The unit's own image decodes, or there is an init image (img2img) it can use instead (or the unit
    sends precomputed IP-Adapter embeddings)."""
    if unit.ipadapter_input is None and decode_unit_images(unit) is None and not has_init_image:
        raise InputError(NO_IMAGE, field="image")


def _prepare(index, unit: Unit, inputs: GenerationInputs, models, model_cache, preprocessors, result_cache):
    preprocessor, entry = check_unit_setup(unit, models=models, preprocessors=preprocessors, family=inputs.family)
    if preprocessor.name == "ip-adapter-auto":  # the reference's preset table, by the model's file stem
        preprocessor = preprocessors.get(auto_module(entry.name))
        if preprocessor is None:
            raise InputError(f"ip-adapter-auto: {entry.name} needs a preprocessor this build does not have",
                             field="module")
        logger.info("ControlNet unit %s: ip-adapter-auto => %s", index, preprocessor.label)
    if unit.ipadapter_input is not None:
        return _precomputed_unit(index, unit, entry, inputs, model_cache)
    if preprocessor.name == "inpaint_only" and inputs.inpaint_mask is not None:
        # A1111 inpaints the masked area itself; pasting the rest back twice fights it (the reference's rule)
        logger.warning("ControlNet unit %s: A1111's inpaint mask and inpaint_only both keep the unmasked area; "
                       "using inpaint_global_harmonious instead", index)
        preprocessor = preprocessors.get("inpaint")

    h, w = hint_size(inputs.width, inputs.height)
    images, from_init = _input_images(index, unit, inputs, preprocessor.accepts_mask)
    # the reference's choose_input_image: the init image comes with the host's resize mode, which then serves
    # every step below (the "Only masked" crop, outpainting, pixel perfect, fitting the maps)
    host_mode = inputs.init_resize_mode if from_init else None
    resize_mode = unit.resize_mode if host_mode is None else host_mode
    if inputs.inpaint_mask is not None and wants_masked_crop(
        unit.module, unit.inpaint_crop_input_image, inputs.inpaint_only_masked, True, inputs.generation_param_keys
    ):
        images = [
            crop_control_image(img, inputs.inpaint_mask, padding=inputs.inpaint_padding, width=inputs.width,
                               height=inputs.height, resize_mode=resize_mode)
            for img in images
        ]

    if preprocessor.outpaint_first and ResizeMode.parse(resize_mode, field="resize_mode") is ResizeMode.OUTER_FIT:
        # inpaint_only+lama outpaints: the input is padded to the final size first, the padding marked as mask
        final_h, final_w = inputs.hires_size or (h, w)
        images = [fit_detected_map(img, ResizeMode.OUTER_FIT, final_h, final_w, keep_alpha=True) for img in images]

    notes: list[str] = []
    params = resolve_params(preprocessor, -1 if unit.pixel_perfect else unit.processor_res, unit.threshold_a,
                            unit.threshold_b, seed=inputs.seed, notes=notes)
    if unit.pixel_perfect and preprocessor.resolution.visible and preprocessor.resolution.affects_output:
        # computed, never refused: a tiny or extreme-aspect image only raises it to the slider's minimum
        computed = pixel_perfect_resolution(images[0], h, w, resize_mode)
        params = replace(params, resolution=max(computed, int(preprocessor.resolution.minimum)))
        note = unused_resolution_note(preprocessor, unit.processor_res, params.resolution)
        if note:
            notes.append(note)

    keep_alpha = unit.is_inpaint
    maps, hires_maps, shown, embeddings = [], [], [], []
    for rgba in images:
        # by the preprocessor that runs (ip-adapter-auto resolved: a face module drops the alpha)
        source = control_input(rgba, keep_rgba=preprocessor.accepts_mask or uses_clip(preprocessor.name),
                               ignore_mask=inputs.ignore_noninpaint_mask)
        detection = run_preprocessor(preprocessor, source, params, cache=result_cache)
        if not preprocessor.returns_image:  # an embedding (CLIP vision, a face): no map to fit, nothing to show
            found = detection.map
            embeddings.append(face_embedding(found) if isinstance(found, torch.Tensor) else found)
            continue
        maps.append(fit_detected_map(detection.map, resize_mode, h, w, keep_alpha=keep_alpha))
        if inputs.hires_size is not None:
            hr_h, hr_w = inputs.hires_size
            hires_maps.append(fit_detected_map(detection.map, resize_mode, hr_h, hr_w, keep_alpha=keep_alpha))
        shown.append(detection.display)

    hr_option = unit.hr_option if inputs.hires_size is not None else HiResFixOption.BOTH
    effects: list[Effect] = []
    if entry is not None and embeddings:
        # kinds driven by embeddings (IP-Adapter, the T2I style adapter) build their unit from them
        model = _load_model(model_cache, entry, inputs)
        cls = unit_class(model.kind)
        if not hasattr(cls, "from_embeddings"):
            raise InputError(f"preprocessor {preprocessor.label} gives image embeddings, which a {model.kind} model "
                             "cannot use: pick a preprocessor that gives a control map", field="module")
        effects.append(cls.from_embeddings(model, embeddings, unit=unit, index=index, hr_option=HiResFixOption.BOTH
                                           if inputs.hires_size is None else unit.hr_option))
        note = lora_note(entry.name, inputs.prompt, inputs.has_lora) if model.kind == "ip_adapter" else None
        if note:
            notes.append(note)
    elif entry is not None:
        model = _load_model(model_cache, entry, inputs)
        check_family(entry.name, model.family, inputs.family)  # files without a readable header (pickles)
        region = decode_region_mask(unit.effective_region_mask, unit=index)
        cls = unit_class(model.kind)
        effects.append(cls(
            model,
            stack_hints([hint_tensor(m) for m in maps]),
            hint_hires=stack_hints([hint_tensor(m) for m in hires_maps]) if hires_maps else None,
            weight=unit.weight,
            guidance_start=unit.guidance_start,
            guidance_end=unit.guidance_end,
            control_mode=unit.control_mode,
            advanced_weighting=unit.advanced_weighting,
            effective_region_mask=None if region is None else torch.from_numpy(region),
            hr_option=hr_option,
            soft_injection_in_hires=preprocessor.soft_injection_in_hires,
            low_vram=unit.low_vram,
            index=index,
            **cls.options_from(unit, preprocessor),
        ))
    post: list[PixelPost] = []
    noise: list[NoiseModifier] = []
    if preprocessor.control is not None:
        extra = build_controls(preprocessor.control, ControlRequest(
            index=index, module=preprocessor.name, params=params, maps=maps, maps_hires=hires_maps or None,
            weight=unit.weight, guidance_start=unit.guidance_start, guidance_end=unit.guidance_end,
            control_mode=unit.control_mode, hr_option=hr_option, seed=inputs.seed, family=inputs.family,
            inpaint_blur_sigma=inputs.inpaint_blur_sigma, embeddings=embeddings, empty_prompts=inputs.empty_prompts))
        effects += extra.effects
        post += extra.post
        noise += extra.noise
    resolution = _infotext_resolution(preprocessor.resolution, unit.processor_res, params.resolution)
    warnings = [f"ControlNet unit {index}: {note}" for note in notes]
    for line in warnings:
        logger.warning("%s", line)
    # infotext records what ran: the resolved "stem [hash]" (a bare stem could find another file on paste)
    main = effects[0] if entry is not None else None
    kind_fields = main.infotext_fields() if hasattr(main, "infotext_fields") else {}
    used = replace(unit, model=entry.name if entry is not None else unit.model, processor_res=resolution,
                   threshold_a=params.slider_1, threshold_b=params.slider_2, **kind_fields)
    return PreparedUnit(index, used, effects, shown if unit.save_detected_map else [], warnings, post, noise,
                        resize_mode=host_mode)


def _load_model(model_cache: ModelCache, entry, inputs: GenerationInputs):
    try:
        return model_cache.get(entry.path, base_unet=inputs.base_unet, base_id=inputs.base_id)
    except ControlNetError as exc:  # a file truncated, replaced or unreadable since the scan: the model's fault
        raise exc.at(field="model") from None


def _precomputed_unit(index: int, unit: Unit, entry, inputs: GenerationInputs, model_cache) -> PreparedUnit:
    """A unit with `ipadapter_input`: embeddings sent by the API instead of images to preprocess."""
    if entry is None:
        raise InputError("ipadapter_input needs an IP-Adapter model", field="model")
    embeddings = decode_ipadapter_input(unit.ipadapter_input, unit=index)
    model = _load_model(model_cache, entry, inputs)
    cls = unit_class(model.kind)
    if model.kind != "ip_adapter":
        raise InputError(f"ipadapter_input is for IP-Adapter models; {entry.name} is a {model.kind}",
                         field="ipadapter_input")
    hr_option = HiResFixOption.BOTH if inputs.hires_size is None else unit.hr_option
    effect = cls.from_embeddings(model, embeddings, unit=unit, index=index, hr_option=hr_option)
    note = lora_note(entry.name, inputs.prompt, inputs.has_lora)
    warnings = [f"ControlNet unit {index}: {note}"] if note else []
    for line in warnings:
        logger.warning("%s", line)
    return PreparedUnit(index, replace(unit, model=entry.name), [effect], [], warnings)


def _infotext_resolution(slider, sent: int, used: int) -> int:
    """Processor Res for the infotext: what ran (pixel perfect: the computed value) where the module uses it;
    for a slider shown but unused (none, tile_resample) the reference's rule, the sent value when in range
    (else the default), so pasting restores the slider; for a module without one, the value as sent (the
    reference writes its placeholder 0.5 there, which no host reads back)."""
    if not slider.visible:
        return sent
    if not slider.affects_output:
        return sent if slider.contains(sent) else int(slider.value)
    return used


def detected_map_images(prepared: Sequence[PreparedUnit], inputs: GenerationInputs) -> Iterator[np.ndarray]:
    """The maps a host appends to its output images, in unit order, at the hint sizes: with hires fix the
    hires-size map first, then the first-pass one (the reference's order and count)."""
    h, w = hint_size(inputs.width, inputs.height)
    for pu in prepared:
        for shown in pu.detected_maps:
            if inputs.hires_size is not None:
                yield fit_detected_map(shown, pu.fit_mode, *inputs.hires_size)
            yield fit_detected_map(shown, pu.fit_mode, h, w)


def _input_images(index: int, unit: Unit, inputs: GenerationInputs,
                  accepts_mask: bool) -> tuple[list[np.ndarray], bool]:
    """The unit's images as HxWx4 RGBA, and whether they are the init image (in img2img a unit without its own
    image reads it)."""
    images = decode_unit_images(unit, index=index)
    if images is not None:
        return images, False
    if inputs.init_image is None:
        raise InputError(NO_IMAGE, field="image")
    rgb = np.ascontiguousarray(inputs.init_image[:, :, :3])
    alpha = np.zeros(rgb.shape[:2], dtype=np.uint8)
    if accepts_mask and inputs.inpaint_mask is not None:
        mask = inputs.inpaint_mask
        if mask.shape != alpha.shape:
            raise InputError(f"the img2img mask {mask.shape} does not match the init image {alpha.shape}",
                             field="mask")
        alpha = mask
    return [np.dstack([rgb, alpha])], True
