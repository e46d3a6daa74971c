"""The A1111 adapter: A1111's processing object and script arguments in, `lib_controlnet` calls out.

Lifecycle of one generation:
  process()                        parse every unit (UI state, API dict or another extension's object),
                                   preprocess and load models (lib_controlnet.generation.prepare_units);
  process_before_every_sampling()  attach the UNet hook for this pass (txt2img, hires pass, img2img);
  p.sample (wrapped)               detaches it when sampling ends, also when sampling raises;
  postprocess()                    detached again (idempotent), detected maps appended.
A1111 swallows exceptions raised in script callbacks and would generate without the unit; ours are kept
and re-raised from `p.sample`, outside A1111's try/except, so the API answers 4xx naming the unit and
field, and the UI shows the message.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from modules import devices, script_callbacks, scripts, sd_models, shared
from modules.paths_internal import data_path, models_path
from PIL import Image

from annotator.neural import runtime as annotator_runtime
from annotator.neural.weights import set_weights_folder
from lib_controlnet import settings as cn_settings
from lib_controlnet.enums import ResizeMode
from lib_controlnet.errors import ControlNetError, InputError
from lib_controlnet.generation import (
    GenerationInputs,
    check_unit_image,
    check_unit_setup,
    detected_map_images,
    hook_effects,
    initial_noise,
    post_process,
    prepare_units,
)
from lib_controlnet.hook.cfg_rows import CfgBatchRows
from lib_controlnet.hook.control_hook import ControlHook
from lib_controlnet.hook.host import HostInfo
from lib_controlnet.kinds.ip_adapter_presets import a1111_lora_lookup
from lib_controlnet.models.cache import ModelCache
from lib_controlnet.models.registry import ModelRegistry
from lib_controlnet.preprocessors import default_registry
from lib_controlnet.units.hint_size import hires_hint_size
from lib_controlnet.units.image_input import init_image_array
from lib_controlnet.units.infotext import infotext_params
from lib_controlnet.units.masked_crop import prepare_mask
from lib_controlnet.units.script_control import (
    AXES,
    XYZ_MARK,
    apply_overrides,
    axis_choices,
    check_axis_cells,
    check_axis_values,
    overrides_from,
    set_axis_value,
)
from lib_controlnet.units.unit import Unit

logger = logging.getLogger("controlnet")
EXTENSION_ROOT = Path(__file__).resolve().parent.parent
API_UNIT_SLOTS = 10  # units an API request may carry even when the UI shows fewer tabs


def option(key: str):
    return cn_settings.read(shared.opts.data, key)


def model_folders() -> list[str]:
    folders = [os.path.join(models_path, "ControlNet"), str(EXTENSION_ROOT / "models"),
               option("control_net_models_path")]
    flag = getattr(shared.cmd_opts, "controlnet_dir", None)
    return [f for f in folders + [flag] if f]


MODELS = ModelRegistry(model_folders(), sort_by=option("control_net_models_sort_models_by"),
                       name_filter=option("control_net_models_name_filter"))
MODEL_CACHE = ModelCache(option("control_net_model_cache_size"))
ROWS = CfgBatchRows()


def configure_annotators() -> None:
    """Neural annotators: the weight folder as the reference chooses it (setting, then flag, relative to the
    data folder), the device ControlNet runs on, and the ControlNet model cache's size."""
    set_weights_folder(option("control_net_modules_path"),
                       getattr(shared.cmd_opts, "controlnet_annotator_models_path", None), data_path=data_path)
    annotator_runtime.configure(device=devices.get_device_for("controlnet"),
                                capacity=option("control_net_model_cache_size"))


configure_annotators()


def host_info(sd_model) -> HostInfo:
    """A1111's model as the hook's controls need it: ᾱ_t (A1111 sets `alphas_cumprod` on SDXL models too),
    eps or v prediction, and its VAE encoder under A1111's autocast."""
    alphas = getattr(sd_model, "alphas_cumprod", None)

    def encode(pixels01: torch.Tensor) -> torch.Tensor:
        x = (pixels01 * 2 - 1).to(devices.device, devices.dtype_vae)
        with torch.no_grad(), devices.autocast():
            latent = sd_model.get_first_stage_encoding(sd_model.encode_first_stage(x))
        if torch.isnan(latent).all():  # an fp16 VAE that overflows: this encode in fp32 (the reference's retry)
            vae = sd_model.first_stage_model
            dtype = next(vae.parameters()).dtype
            try:
                vae.to(torch.float32)
                with torch.no_grad():
                    latent = sd_model.get_first_stage_encoding(sd_model.encode_first_stage(x.float()))
            finally:
                vae.to(dtype)  # A1111's VAE stays as the user configured it
        return latent.to(devices.dtype_unet)

    return HostInfo(
        alphas_cumprod=None if alphas is None else alphas.detach().float().cpu(),
        prediction="v" if getattr(sd_model, "parameterization", "eps") == "v" else "eps",
        encode_image=encode,
        family=checkpoint_family(sd_model),
    )


class _NoiseSource:
    """A1111's ImageRNG with the units' noise modifiers applied to what `next()` returns."""

    def __init__(self, rng, prepared, host):
        self._rng, self._prepared, self._host = rng, prepared, host

    def next(self):
        return initial_noise(self._prepared, self._rng.next(), self._host)

    def __getattr__(self, name):
        return getattr(self._rng, name)


def checkpoint_family(sd_model) -> str | None:
    if getattr(sd_model, "is_sdxl", False):
        return "sdxl"
    if getattr(sd_model, "is_sd2", False):
        return "sd2"
    if getattr(sd_model, "is_sd1", False):
        return "sd1"
    return None


class _Session:
    """One generation's state, kept on `p` (per request, never global) until postprocess lets go of it: A1111
    leaves each `p` in reference cycles (p <-> its sampler) that only Python's cycle collector frees, and
    anything the session held would live as long (see `_prepare` for the host UNet's weights)."""

    def __init__(self, prepared, inputs):
        self.prepared = prepared
        self.inputs = inputs
        self.hook: ControlHook | None = None

    def detach(self):
        if self.hook is not None:
            self.hook.remove()
            self.hook = None
        ROWS.reset()


class Script(scripts.Script):
    def title(self):
        return "ControlNet"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        from lib_controlnet.ui.panel import build_panel

        # One gr.State per unit slot, each holding the unit's Unit; the extra hidden slots let API callers
        # send more units than the UI shows (A1111 drops arguments beyond the script's slots).
        tab = "img2img" if is_img2img else "txt2img"
        size = (_COMPONENTS.get(f"{tab}_width"), _COMPONENTS.get(f"{tab}_height"))
        states = build_panel(
            tab,
            option("control_net_unit_count"),
            models=MODELS,
            preprocessors=default_registry(),
            # model_data, not shared.sd_model: reading the latter while the UI is built can trigger a load
            checkpoint_family=lambda: checkpoint_family(sd_models.model_data.sd_model),
            send_dimensions_targets=size if None not in size else None,
            total_slots=API_UNIT_SLOTS,
            control_type_dropdown=option("controlnet_control_type_dropdown"),
            ignore_noninpaint_mask=lambda: option("controlnet_ignore_noninpaint_mask"),
        )
        generate = _COMPONENTS.get(f"{tab}_generate")
        if generate is not None:
            states.sync_on(generate)  # values changed just before Generate are not missed (reference #2875)
        if option("control_net_sync_field_args"):
            from lib_controlnet.ui.paste import paste_fields

            self.infotext_fields = paste_fields(states.units)  # filled by _on_infotext_pasted's keys
            self.paste_field_names = [key for _, key in self.infotext_fields]
        return states

    # --- generation ---------------------------------------------------------------------------------------
    def process(self, p, *unit_args):
        _detach(p)  # a previous generation that died before postprocess leaves nothing behind
        try:
            session = _prepare(p, unit_args)
        except ControlNetError as exc:
            _fail_sampling(p, exc)
            return
        except Exception as exc:  # a bug of ours: still fail the request rather than generate without units
            logger.exception("ControlNet failed while preparing units")
            _fail_sampling(p, RuntimeError(f"ControlNet: {exc}"))
            return
        if session is None:
            return
        p.controlnet_session = session
        p.extra_generation_params.update(infotext_params({pu.index: pu.unit for pu in session.prepared}))
        _wrap_sample(p)

    def process_before_every_sampling(self, p, *unit_args, **kwargs):
        session = getattr(p, "controlnet_session", None)
        if session is None or getattr(p, "controlnet_error", None) is not None:
            return
        session.detach()
        try:
            session.hook = _attach(session, p.sd_model)
        except ControlNetError as exc:
            _fail_sampling(p, exc)

    def before_process_batch(self, p, *unit_args, **kwargs):
        """Units that change the initial noise (inpaint_only+lama) wrap this batch's noise source; A1111 makes a
        new one per batch (and for the hires pass), so nothing of ours outlives the batch."""
        session = getattr(p, "controlnet_session", None)
        if session is None or getattr(p, "controlnet_error", None) or not any(pu.noise for pu in session.prepared):
            return
        p.rng = _NoiseSource(p.rng, session.prepared, host_info(p.sd_model))

    def postprocess_batch(self, p, *unit_args, **kwargs):
        """The units' pixel post-processes (inpaint_only's paste-back, recolor) on the decoded batch, in place:
        A1111 hands over [B, 3, H, W] in [0, 1] before it saves or overlays anything."""
        session = getattr(p, "controlnet_session", None)
        images = kwargs.get("images")
        if session is None or images is None or getattr(p, "controlnet_error", None):
            return
        for i in range(len(images)):
            images[i] = post_process(session.prepared, images[i], i)

    def postprocess(self, p, processed, *unit_args):
        session = getattr(p, "controlnet_session", None)
        _detach(p)
        p.controlnet_session = None  # the request is over (see _Session)
        if session is None or getattr(p, "controlnet_error", None):
            return
        if option("control_net_detectmap_autosaving"):
            _save_detected_maps(p, session)
        if option("control_net_no_detectmap"):
            return
        for image in detected_map_images(session.prepared, session.inputs):
            processed.images.append(Image.fromarray(image))


def _parse_units(unit_args, registry) -> list[Unit]:
    return [Unit.from_dict(arg, index=i, is_known_module=registry.__contains__)
            for i, arg in enumerate(unit_args) if arg is not None]


def _prepare(p, unit_args) -> _Session | None:
    registry = default_registry()
    units = _script_overrides(p, _parse_units(unit_args, registry), registry)
    for unit in units:
        for note in unit.warnings():
            logger.warning("ControlNet unit %s: %s", units.index(unit), note)
    if not any(u.enabled for u in units):
        return None
    MODELS.set_folders(model_folders())
    MODEL_CACHE.set_capacity(option("control_net_model_cache_size"))
    inputs = _generation_inputs(p)
    try:
        prepared = prepare_units(units, inputs, models=MODELS, model_cache=MODEL_CACHE, preprocessors=registry)
    finally:
        # The UNet's live parameters served the models built on them (Control-LoRAs keep their own references).
        # Kept on the session, or in the traceback of a failed unit that `p.controlnet_error` holds, they would
        # outlive a checkpoint switch: A1111 "trashes" a model by moving it to the meta device, which gives the
        # modules new Parameter objects and leaves the old ones, and their memory (10 GB for SDXL), to whoever
        # still refers to them.
        inputs.base_unet = None
    return _Session(prepared, inputs)


def _script_overrides(p, units: list[Unit], registry) -> list[Unit]:
    """`p.control_net_*` set by our X/Y/Z axes, or by other scripts when the setting allows it."""
    overrides = overrides_from(p)
    if not overrides:
        return units
    from_xyz = bool(getattr(p, XYZ_MARK, False))
    if not from_xyz and not option("control_net_allow_script_control"):
        logger.warning("ControlNet: ignoring %s set by another script; enable \"Allow other script to control this "
                       "extension\" in the ControlNet settings to let it", ", ".join(overrides))
        return units
    units = apply_overrides(units, overrides, is_known_module=registry.__contains__)
    # An "[ControlNet] Enabled: False" cell is meant to generate without ControlNet; any other axis with no
    # enabled unit would silently plot the same image in every cell.
    if from_xyz and not any(u.enabled for u in units) and "control_net_enabled" not in overrides:
        raise InputError("the X/Y/Z plot sets ControlNet fields, but no ControlNet unit is enabled", field="enabled")
    return units


def _units_of(p, registry) -> list[Unit] | None:
    """Our units as sent with `p` (its script runner's argument slice for this script), before overrides."""
    runner, args = getattr(p, "scripts", None), getattr(p, "script_args", None)
    ours = next((s for s in getattr(runner, "alwayson_scripts", None) or [] if isinstance(s, Script)), None)
    if ours is None or args is None:
        return None
    return _parse_units(args[ours.args_from:ours.args_to], registry)


def _confirm_axis(p, axis, values, registry) -> None:
    """Before the X/Y/Z grid starts (A1111 calls this with the grid's `p`)."""
    units = _units_of(p, registry)
    if units is None:
        check_axis_values(axis, values, is_known_module=registry.__contains__)
        return
    MODELS.set_folders(model_folders())
    has_init_image = bool(getattr(p, "init_images", None))

    family = checkpoint_family(p.sd_model)

    def check_unit(unit: Unit) -> None:
        check_unit_setup(unit, models=MODELS, preprocessors=registry, family=family)
        check_unit_image(unit, has_init_image=has_init_image)

    check_axis_cells(axis, values, units, is_known_module=registry.__contains__, check_unit=check_unit)


def _generation_inputs(p) -> GenerationInputs:
    hires = None
    if getattr(p, "enable_hr", False):
        hires = hires_hint_size(p.width, p.height, p.hr_scale, p.hr_resize_x, p.hr_resize_y)
    init_image = mask = init_mode = None
    init_images = getattr(p, "init_images", None)
    if init_images:
        # as the reference: p.init_images[0] as sent (process() runs before A1111 resizes it, in p.init), fitted
        # by A1111's own img2img resize mode, RGBA over white
        init_image = init_image_array(init_images[0])
        init_mode = ResizeMode.from_img2img(getattr(p, "resize_mode", 0))
        if getattr(p, "image_mask", None) is not None:
            mask = prepare_mask(np.asarray(p.image_mask), invert=bool(p.inpainting_mask_invert),
                                blur_x=p.mask_blur_x, blur_y=p.mask_blur_y)
    seed = p.all_seeds[0] if getattr(p, "all_seeds", None) else p.seed
    subseed = p.all_subseeds[0] if getattr(p, "all_subseeds", None) else p.subseed
    unet = p.sd_model.model.diffusion_model
    return GenerationInputs(
        width=p.width,
        height=p.height,
        seed=(int(seed) + int(subseed)) & 0xFFFFFFFF,
        init_image=init_image,
        init_resize_mode=init_mode,
        inpaint_mask=mask,
        inpaint_only_masked=bool(getattr(p, "inpaint_full_res", False)),
        inpaint_padding=int(getattr(p, "inpaint_full_res_padding", 32)),
        hires_size=hires,
        base_unet=unet.state_dict(keep_vars=True),  # live parameters: Control-LoRAs read them at call time
        base_id=getattr(p.sd_model, "sd_model_hash", None),
        generation_param_keys=tuple(p.extra_generation_params),
        ignore_noninpaint_mask=option("controlnet_ignore_noninpaint_mask"),
        family=checkpoint_family(p.sd_model),
        inpaint_blur_sigma=int(option("control_net_inpaint_blur_sigma")),
        prompt=" ".join(map(str, p.prompt)) if isinstance(getattr(p, "prompt", ""), list) else str(p.prompt or ""),
        has_lora=a1111_lora_lookup(sys.modules.get("networks")),  # the built-in Lora extension's module
    )


def _save_detected_maps(p, session: _Session) -> None:
    """The reference's "Allow detectmap auto saving": each unit's maps into <dir>/<module>, a relative <dir>
    being under the txt2img/img2img output folder."""
    from modules import images

    folder = Path(option("control_net_detectedmap_dir") or "detected_maps")
    if not folder.is_absolute():
        folder = Path(p.outpath_samples) / folder
    for pu in session.prepared:
        if pu.unit.module == "none":
            continue
        for detected in pu.detected_maps:
            images.save_image(Image.fromarray(detected), str(folder / pu.unit.module), pu.unit.module)


def _fail_sampling(p, exc: BaseException) -> None:
    """Make the generation fail with `exc` where A1111 does not swallow it: in `p.sample`."""
    logger.error("%s", exc)
    p.controlnet_error = exc

    def raise_error(*args, **kwargs):
        raise exc

    p.sample = raise_error


def _wrap_sample(p) -> None:
    original = p.sample

    def sample_with_controlnet(*args, **kwargs):
        try:
            return original(*args, **kwargs)
        finally:
            _detach(p)  # the hook lives exactly as long as sampling, whatever happens inside

    p.sample = sample_with_controlnet


def _low_vram(sd_model) -> bool:
    """A1111's lowvram.is_needed: --lowvram, --medvram, or --medvram-sdxl with an SDXL checkpoint."""
    opts = shared.cmd_opts
    return bool(getattr(opts, "lowvram", False) or getattr(opts, "medvram", False)
                or (getattr(opts, "medvram_sdxl", False) and checkpoint_family(sd_model) == "sdxl"))


def _attach(session, sd_model) -> ControlHook:
    units = hook_effects(session.prepared)
    low_vram = _low_vram(sd_model)
    for unit in units:
        unit.low_vram = unit.low_vram or low_vram
    return ControlHook(sd_model.model.diffusion_model, units, ROWS, family=checkpoint_family(sd_model),
                       device=devices.get_device_for("controlnet"), dtype=devices.dtype_unet,
                       host=host_info(sd_model)).attach()


def _follow_refiner(p) -> None:
    """A1111 swaps in the refiner checkpoint inside the sampler (apply_refiner, before this step's callback):
    move the hook to the new UNet. A refiner of another layout (SDXL's own refiner: 4 levels, context 1280)
    cannot take the units' residuals; they end at the switch, which the log and the infotext say."""
    session = getattr(p, "controlnet_session", None)
    if session is None or session.hook is None or getattr(p, "controlnet_error", None) is not None:
        return
    sd_model = shared.sd_model
    if sd_model.model.diffusion_model is session.hook.unet:
        return
    session.hook.remove()
    session.hook = None
    try:
        session.hook = _attach(session, sd_model)
    except ControlNetError as exc:
        logger.warning("ControlNet: the units stop at the refiner switch: %s", exc.message)
        p.extra_generation_params["ControlNet refiner"] = "units stopped at the switch (another UNet layout)"


def _on_model_loaded(sd_model) -> None:
    """Another checkpoint is in (or the refiner's weights): cached models built on the previous one (Control-LoRAs,
    difference ControlNets) would be rebuilt at their next use, and until then keep its UNet's weights alive."""
    dropped = MODEL_CACHE.drop_other_bases(getattr(sd_model, "sd_model_hash", None))
    if dropped:
        logger.info("ControlNet: dropped %d cached model(s) built on the previous checkpoint", dropped)


def _detach(p) -> None:
    session = getattr(p, "controlnet_session", None)
    if session is not None:
        session.detach()


_COMPONENTS: dict[str, object] = {}  # A1111 widgets our panel wires to, by elem_id


def _on_after_component(component, **kwargs) -> None:
    elem_id = kwargs.get("elem_id") or getattr(component, "elem_id", None)
    if elem_id in ("txt2img_generate", "img2img_generate", "txt2img_width", "txt2img_height", "img2img_width",
                   "img2img_height"):
        _COMPONENTS[elem_id] = component


def _on_cfg_denoiser(params) -> None:
    """Announce the step's [cond..., uncond...] layout and progress to the row ledger."""
    cond = params.text_cond["crossattn"] if isinstance(params.text_cond, dict) else params.text_cond
    n_total = params.x.shape[0]
    n_cond = cond.shape[0]
    p = getattr(params.denoiser, "p", None)
    if p is not None:
        _follow_refiner(p)
    ROWS.start_step(n_cond, n_total - n_cond, fraction=params.sampling_step / max(1, params.total_sampling_steps),
                    hires=bool(getattr(p, "is_hr_pass", False)))


def _on_ui_settings() -> None:
    section = cn_settings.SECTION
    components = {"textbox": gr.Textbox, "checkbox": gr.Checkbox, "slider": gr.Slider, "dropdown": gr.Dropdown}
    for s in cn_settings.SETTINGS:
        info = shared.OptionInfo(s.default, s.page_label, components[s.component], s.component_args,
                                 section=section)
        if s.needs_reload_ui:
            info = info.needs_reload_ui()
        shared.opts.add_option(s.key, info)
    for key in ("control_net_modules_path", "control_net_model_cache_size"):  # applied without a restart
        shared.opts.onchange(key, configure_annotators, call=False)


def _on_infotext_pasted(infotext: str, params: dict) -> None:
    """Add our paste keys (`ControlNet <i> <widget>`) for the fields registered in `Script.ui`."""
    if not option("control_net_sync_field_args"):
        return
    from lib_controlnet.ui.paste import paste_values

    params.update(paste_values(params, preprocessors=default_registry(),
                               unit_count=option("control_net_unit_count")))


def _register_xyz_axes() -> None:
    """Our axes in A1111's X/Y/Z plot script (when it is loaded), with the reference's labels."""
    xyz = next((d.module for d in scripts.scripts_data if d.script_class.__module__ == "xyz_grid.py"), None)
    if xyz is None or any(getattr(o, "label", "") == AXES[0].label for o in xyz.axis_options):
        return
    registry = default_registry()

    def make(axis):
        def apply(p, value, values):
            set_axis_value(p, axis, value)

        def confirm(p, values):
            _confirm_axis(p, axis, values, registry)

        def choices():
            return axis_choices(axis, models=lambda: ["None", *MODELS.list_names()],
                                modules=lambda: [m.name for m in registry])

        kwargs = {"choices": choices} if axis.choices else {}
        return xyz.AxisOption(axis.label, axis.kind, apply, confirm=confirm, **kwargs)

    xyz.axis_options.extend(make(axis) for axis in AXES)


def _on_app_started(demo, app) -> None:
    from lib_controlnet.api import create_router

    app.include_router(create_router(models=MODELS, unit_count=lambda: option("control_net_unit_count")))


script_callbacks.on_cfg_denoiser(_on_cfg_denoiser)
script_callbacks.on_model_loaded(_on_model_loaded)
script_callbacks.on_after_component(_on_after_component)
script_callbacks.on_ui_settings(_on_ui_settings)
script_callbacks.on_app_started(_on_app_started)
script_callbacks.on_infotext_pasted(_on_infotext_pasted)
script_callbacks.on_before_ui(_register_xyz_axes)
