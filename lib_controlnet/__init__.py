"""Host-neutral ControlNet core: model files in, residuals added to the host UNet out.

Public entry points (used by the A1111 adapter, the standalone host, other extensions and our tests):

    model = load_control_model("control_v11p_sd15_canny.safetensors")  # .family, .kind, callable
    unit = BoundUnit(model, hint, weight=0.8, control_mode=ControlMode.PROMPT)
    with ControlHook(unet, [unit], call_info).applied():
        ...sample...
"""

from .enums import ControlMode, HiResFixOption, ResizeMode
from .errors import (
    ControlNetError,
    IncompatibleModelError,
    InputError,
    MissingDependencyError,
    ModelFileError,
    NotFoundError,
    UnsafeFileError,
    http_status,
)
from .hook.control_hook import CallInfo, ControlHook
from .kinds.controlnet import ControlModel
from .kinds.controlnet_unit import BoundUnit
from .models.cache import ModelCache
from .models.loading import load_control_model

__all__ = [
    "BoundUnit",
    "CallInfo",
    "ControlHook",
    "ControlMode",
    "ControlModel",
    "ControlNetError",
    "HiResFixOption",
    "IncompatibleModelError",
    "InputError",
    "MissingDependencyError",
    "ModelCache",
    "ModelFileError",
    "NotFoundError",
    "ResizeMode",
    "UnsafeFileError",
    "http_status",
    "load_control_model",
]
