"""A second extension, for the A1111 rig only (tools/a1111_rig.sh links it next to ours): it lets tests/a1111 see
inside the WebUI's process, which the HTTP API cannot.

GET /cn-rig/model_state: everything a ControlNet hook could leave behind on `shared.sd_model` (the UNet, its
attention and norm modules, the VAE, the text encoder), as JSON that two calls can be compared with:

- `modules`: per named module, its class and the class's `forward` (A1111's attention optimisations replace
  that at class level), a `forward` set on the instance, the names in its `__dict__` (an attribute a hook adds
  and forgets), the entries of every hook dict, its children, and the plain values of attention and norm
  modules;
- `weights`: per parameter and buffer, its storage address, shape, dtype, device, version counter (bumped by
  any in-place write) and sum;
- `global_hooks`: torch's global module hooks; `functions`: the torch.nn.functional functions a hook could
  patch instead of a module.

GET /cn-rig/live: how many of our per-request objects (`_Session`, `GenerationInputs`, `ControlHook`) are alive,
without running Python's cycle collector (A1111 leaves every `p` in reference cycles, so whatever a `p` refers to
lives until the collector happens to run), the bytes of host-UNet parameters they refer to, and the bytes of all
live tensors that are not the loaded model's (cached control models, annotators, and whatever still holds a
checkpoint A1111 switched away from).

POST /cn-rig/trim: glibc's malloc_trim(0), and the WebUI's RSS before and after. Tensors freed after a checkpoint
switch go back to malloc's free lists, not to the system (9 GB stayed resident after SDXL -> SD1.5 until a trim).

Nothing here changes the model; the routes run under no_grad and read only.
"""

from __future__ import annotations

import ctypes
import gc

import psutil
import torch
from modules import script_callbacks, shared
from torch.nn.modules import module as torch_module

HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
              "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called",
              "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
              "_load_state_dict_post_hooks")
GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                "_global_backward_pre_hooks", "_global_forward_hooks_always_called",
                "_global_module_registration_hooks", "_global_parameter_registration_hooks",
                "_global_buffer_registration_hooks")
FUNCTIONS = ("scaled_dot_product_attention", "group_norm", "layer_norm", "conv2d", "linear", "silu", "gelu",
             "softmax", "interpolate")


def _callable(f) -> str:
    return f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', type(f).__name__)}@{id(f):x}"


def _attention_or_norm(m: torch.nn.Module) -> bool:
    name = type(m).__name__.lower()
    return isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm)) or "attention" in name or "norm" in name


def _module(m: torch.nn.Module) -> dict:
    cls = type(m)
    entry = {
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "forward": _callable(cls.forward),
        "instance_forward": _callable(m.__dict__["forward"]) if "forward" in m.__dict__ else None,
        "attributes": sorted(m.__dict__),
        "hooks": {d: [_callable(h) for h in getattr(m, d).values()] for d in HOOK_DICTS if getattr(m, d, None)},
        "children": list(m._modules),
        "training": m.training,
    }
    if _attention_or_norm(m):
        entry["plain"] = {k: v for k, v in sorted(m.__dict__.items())
                          if isinstance(v, (bool, int, float, str, type(None)))}
    return entry


def _weight(t: torch.Tensor) -> list:
    try:
        version = t._version
    except RuntimeError:  # an inference tensor has no version counter
        version = None
    total = t.detach().float().sum() if t.is_floating_point() else t.detach().sum()  # no copy of fp32 weights
    return [t.data_ptr(), list(t.shape), str(t.dtype), str(t.device), version, float(total)]


def model_state() -> dict:
    sd_model = shared.sd_model
    with torch.no_grad():
        return {
            "model": f"{type(sd_model).__qualname__}@{id(sd_model):x}",
            "modules": {name: _module(m) for name, m in sd_model.named_modules()},
            "weights": {name: _weight(t) for name, t in (*sd_model.named_parameters(), *sd_model.named_buffers())},
            "global_hooks": {g: [_callable(h) for h in getattr(torch_module, g, {}).values()] for g in GLOBAL_HOOKS},
            "functions": {f: _callable(getattr(torch.nn.functional, f, None)) for f in FUNCTIONS},
        }


LIVE = ("_Session", "GenerationInputs", "ControlHook")


def _bytes(t: torch.Tensor) -> int:
    return 0 if t.is_meta else t.numel() * t.element_size()


def live() -> dict:
    counts = dict.fromkeys(LIVE, 0)
    unet_bytes = loose_bytes = 0
    model = shared.sd_model
    own = {id(t) for t in (*model.parameters(), *model.buffers())}
    for obj in gc.get_objects():
        name = type(obj).__name__
        if name in counts:
            counts[name] += 1
            base = getattr(obj, "base_unet", None) if name == "GenerationInputs" else None
            unet_bytes += sum(_bytes(t) for t in (base or {}).values())
        elif isinstance(obj, torch.Tensor) and id(obj) not in own:
            loose_bytes += _bytes(obj)
    return {"alive": counts, "unet_bytes": unet_bytes, "loose_bytes": loose_bytes}


def trim() -> dict:
    before = psutil.Process().memory_info().rss
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return {"rss_before": before, "rss_after": psutil.Process().memory_info().rss}


def _on_app_started(demo, app) -> None:
    app.add_api_route("/cn-rig/model_state", model_state, methods=["GET"])
    app.add_api_route("/cn-rig/live", live, methods=["GET"])
    app.add_api_route("/cn-rig/trim", trim, methods=["POST"])


script_callbacks.on_app_started(_on_app_started)
