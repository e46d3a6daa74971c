"""The preprocessor registry: which module names exist, their sliders, and running them (cached).

    from lib_controlnet.preprocessors import default_registry, resolve_params, run_preprocessor

    canny = default_registry().get("canny")
    params = resolve_params(canny, processor_res=512, threshold_a=100, threshold_b=200)
    detection = run_preprocessor(canny, rgb_uint8_image, params)   # .map, .display, .pose

Maps come back at the processing resolution; `map_resize.resize_to_target` fits them to the generation size
by the unit's resize mode. Declarations live in `declarations/`, implementations in the `annotator` package.
"""

from .cache import ResultCache
from .declaration import HIDDEN, RESOLUTION, Detection, Params, Preprocessor, Slider
from .listing import module_detail, module_list
from .params import resolve_params
from .registry import Registry, default_registry
from .runner import default_cache, prepare_input, run_preprocessor

__all__ = [
    "HIDDEN",
    "RESOLUTION",
    "Detection",
    "Params",
    "Preprocessor",
    "Registry",
    "ResultCache",
    "Slider",
    "default_cache",
    "default_registry",
    "module_detail",
    "module_list",
    "prepare_input",
    "resolve_params",
    "run_preprocessor",
]
