"""Running a preprocessor: input normalisation, the result cache, and checks on what comes back."""

from __future__ import annotations

import numpy as np

from annotator.util import hwc3
from lib_controlnet.errors import InputError
from lib_controlnet.lazy import lazy_singleton
from lib_controlnet.units.unit import uses_clip

from .cache import ResultCache
from .declaration import Detection, Params, Preprocessor


@lazy_singleton
def default_cache() -> ResultCache:
    return ResultCache()


def prepare_input(preprocessor: Preprocessor, image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 for most modules; HxWx4 (alpha = mask) kept for those that accept a mask and the CLIP
    encoders (whose mask, as the reference's, needs no upload field: the unit's mask is the CLIP mask)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise InputError("the input image must be a uint8 array", field="image")
    has_mask = image.ndim == 3 and image.shape[2] == 4
    if preprocessor.requires_mask and not has_mask:
        raise InputError(f"preprocessor {preprocessor.name} needs a mask with the image", field="mask")
    if has_mask and (preprocessor.accepts_mask or uses_clip(preprocessor.name)):
        return np.ascontiguousarray(image)  # the mask as alpha (a CLIP mask for the CLIP encoders)
    return np.ascontiguousarray(hwc3(image))


def _as_detection(preprocessor: Preprocessor, output, source: np.ndarray) -> Detection:
    detection = output if isinstance(output, Detection) else Detection(map=output, display=output)
    # Pass-through modules return their input; the caller gets its own array, never a view of the input.
    if isinstance(detection.map, np.ndarray) and np.may_share_memory(detection.map, source):
        same = detection.display is detection.map
        detection.map = detection.map.copy()
        detection.display = detection.map if same else detection.display
    if isinstance(detection.display, np.ndarray) and np.may_share_memory(detection.display, source):
        detection.display = detection.display.copy()
    if preprocessor.returns_image:
        shown = detection.map
        if not (isinstance(shown, np.ndarray) and shown.dtype == np.uint8 and shown.ndim == 3
                and shown.shape[2] in (3, 4)):
            raise TypeError(f"preprocessor {preprocessor.name} returned {type(shown).__name__} "
                            f"{getattr(shown, 'shape', '')} {getattr(shown, 'dtype', '')}, not an HxWxC uint8 map")
    return detection


def run_preprocessor(preprocessor: Preprocessor, image: np.ndarray, params: Params | None = None, *,
                     cache: ResultCache | None = None) -> Detection:
    """The preprocessor's Detection for `image`. Results are cached (in `cache`, or the default cache)
    unless the module is random and no seed was given. The returned arrays are the caller's to modify."""
    params = params or Params(resolution=int(preprocessor.resolution.value), slider_1=preprocessor.slider_1.value,
                              slider_2=preprocessor.slider_2.value)
    if not preprocessor.uses_seed and params.seed is not None:
        params = Params(params.resolution, params.slider_1, params.slider_2, None)  # do not split the cache
    prepared = prepare_input(preprocessor, image)
    cache = default_cache() if cache is None else cache
    cacheable = cache.max_entries > 0 and not (preprocessor.uses_seed and params.seed is None)
    key = ResultCache.key(preprocessor.name, prepared, params) if cacheable else None
    if key is not None:
        hit = cache.get(key, prepared)
        if hit is not None:
            return hit
    detection = _as_detection(preprocessor, preprocessor.run(prepared, params), image)
    if key is not None:
        cache.put(key, prepared, detection)
    return detection
