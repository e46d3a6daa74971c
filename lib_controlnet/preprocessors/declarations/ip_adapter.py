"""ip-adapter-auto: stands for the preprocessor the unit's IP-Adapter file needs (the reference's preset
table by file stem, `kinds.ip_adapter_presets`); generation resolves it before anything runs, so it never
runs itself (and /controlnet/detect refuses it, as the reference does)."""

from lib_controlnet.errors import InputError

from ..declaration import RESOLUTION_UNUSED, Preprocessor


def _resolved_by_the_model(image, params):
    raise InputError("ip-adapter-auto picks its preprocessor from the unit's IP-Adapter model; run that "
                     "preprocessor (e.g. ip-adapter_clip_h) to see its output", field="module")


PREPROCESSORS = (
    Preprocessor(name="ip-adapter-auto", run=_resolved_by_the_model, tags=("IP-Adapter",), priority=1000,
                 resolution=RESOLUTION_UNUSED, returns_image=False, show_control_mode=False),
)
