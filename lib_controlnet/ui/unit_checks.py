"""What is wrong with a unit, said in the panel before the user presses Generate.

The checks are the ones generation makes (`generation.prepare_units`) that need no preprocessing or model
loading: a known preprocessor, an image (or the img2img init image), a mask where the preprocessor needs one,
slider values in range, a model that exists and fits the loaded checkpoint's family. Each problem is one
sentence, shown in the unit's status element.
"""

from __future__ import annotations

from collections.abc import Callable

from lib_controlnet.errors import ControlNetError
from lib_controlnet.models.registry import ModelRegistry
from lib_controlnet.preprocessors import Registry, resolve_params
from lib_controlnet.units.image_input import decode_unit_images
from lib_controlnet.units.unit import Unit

from . import model_family as families

# Words, not emoji: they read the same in every font (a headless browser has no emoji font).
ERROR = "**Error:**"
READY = "**Ready:**"


def unit_problems(unit: Unit, *, tab: str, models: ModelRegistry, preprocessors: Registry,
                  checkpoint_family: Callable[[], str | None] | None = None) -> list[str]:
    """Problems of an enabled unit (a disabled unit has none: it is not used)."""
    if not unit.enabled:
        return []
    problems: list[str] = []
    preprocessor = preprocessors.get(unit.module)
    if preprocessor is None:
        return [f"preprocessor {unit.module!r} is not known"]

    images = None
    try:
        images = decode_unit_images(unit)
    except ControlNetError as exc:
        problems.append(f"the control image cannot be used: {exc.message}")
    else:
        if images is None and tab == "txt2img":
            problems.append("no control image: upload one (or create a blank canvas and draw on it)")
    if preprocessor.requires_mask and images is not None and not any(img[:, :, 3].any() for img in images):
        problems.append(f"preprocessor {preprocessor.label} needs a mask: draw it on the control image")

    resolution = -1 if unit.pixel_perfect else unit.processor_res
    try:
        resolve_params(preprocessor, resolution, unit.threshold_a, unit.threshold_b)
    except ControlNetError as exc:
        problems.append(exc.message)

    if preprocessor.model_free:
        pass  # no model: the preprocessor's control is the whole unit
    elif not unit.has_model:
        problems.append("no ControlNet model selected")
    else:
        problems.extend(_model_problems(unit.model, models, checkpoint_family))
    return problems


def _model_problems(name: str, models: ModelRegistry, checkpoint_family) -> list[str]:
    try:
        entry = models.resolve(name)
    except ControlNetError as exc:
        return [exc.message + ' - press "Refresh models" to rescan the model folders']
    checkpoint = checkpoint_family() if checkpoint_family is not None else None
    family = families.model_family(entry.path, entry.name)
    if not families.compatible(family, checkpoint):
        return [f"model {entry.name} is for {families.label(family)}, but the loaded checkpoint is "
                f"{families.label(checkpoint)}"]
    return []


def status_markdown(unit: Unit | None, problems: list[str], error: ControlNetError | None = None) -> str:
    """The unit's status line(s): the construction error, the problems, or that it is ready."""
    if error is not None:
        return f"{ERROR} {error.message} (field `{error.field}`)" if error.field else f"{ERROR} {error.message}"
    if unit is None or not unit.enabled:
        return ""
    if problems:
        return "\n\n".join(f"{ERROR} {p}" for p in problems)
    model = "" if unit.model in ("", "None") else f" with `{unit.model}`"
    return f"{READY} {unit.module}{model}"
