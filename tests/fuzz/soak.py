"""A soak of the standalone host with faults injected between generations, over loopback HTTP.

`Soak.run(n)` sends `n` generations with random units, control modes, resize modes, sizes, txt2img/img2img and
hires fix, and between them, in turn, the faults: a model file truncated on disk, one replaced by other weights,
a preprocessor that raises, an interrupt in the middle of sampling, an exception inside the ControlNet's
forward, a client that disconnects (while its job runs, and while it waits). After every step the UNet is
checked against the snapshot taken before the soak (`unet_structure`): the class and forward of every module,
every kind of module hook, no attribute added or removed, and the weights. The CI test
(tests/standalone_server/test_server_soak.py) and the long run with timings and RSS (tools/soak.py) share it.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import json
import random
import shutil
import socket
import threading
import time
from collections import Counter
from urllib.parse import urlparse

import numpy as np
import torch
from PIL import Image
from torch import nn

# --- the UNet's structure --------------------------------------------------------------------------------------
_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
               "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called",
               "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
               "_load_state_dict_post_hooks")
_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks", "_global_forward_hooks_always_called",
                 "_global_module_registration_hooks", "_global_parameter_registration_hooks",
                 "_global_buffer_registration_hooks")
# functions a hook could patch instead of a module (attention, normalisation, the convs' and linears' maths)
_FUNCTIONS = ("scaled_dot_product_attention", "group_norm", "layer_norm", "conv2d", "linear", "silu", "gelu",
              "softmax", "interpolate")


def _is_attention_or_norm(module: nn.Module) -> bool:
    name = type(module).__name__.lower()
    return isinstance(module, (nn.GroupNorm, nn.LayerNorm)) or "attention" in name or "norm" in name


def unet_structure(unet: nn.Module) -> dict:
    """Everything a hook could leave behind on `unet`, as comparable values."""
    modules = {}
    for name, module in unet.named_modules():
        entry = {
            "class": type(module),
            "forward": type(module).__dict__.get("forward", type(module).forward),
            "instance_forward": module.__dict__.get("forward"),
            "attributes": tuple(sorted(module.__dict__)),
            "training": module.training,
            "hooks": tuple((d, tuple(getattr(module, d, {}).items())) for d in _HOOK_DICTS),
            "children": tuple(module._modules),
        }
        if _is_attention_or_norm(module):
            entry["plain"] = tuple(sorted((k, v) for k, v in module.__dict__.items()
                                          if isinstance(v, (bool, int, float, str, type(None)))))
        modules[name] = entry
    weights = {name: (t.data_ptr(), tuple(t.shape), t.dtype, float(t.double().sum()), float(t.double().abs().sum()))
               for name, t in (*unet.named_parameters(), *unet.named_buffers())}
    from torch.nn.modules import module as module_module

    return {
        "modules": modules,
        "weights": weights,
        "global_hooks": tuple((g, tuple(getattr(module_module, g, {}).items())) for g in _GLOBAL_HOOKS),
        "functions": tuple((f, getattr(torch.nn.functional, f)) for f in _FUNCTIONS),
        "attention_modules": sum(1 for m in unet.modules() if _is_attention_or_norm(m)),
    }


def structure_diff(before: dict, after: dict) -> list[str]:
    """What changed, in words (empty when nothing did)."""
    changes = []
    for key in ("global_hooks", "functions", "attention_modules"):
        if before[key] != after[key]:
            changes.append(f"{key}: {before[key]!r} -> {after[key]!r}")
    if before["modules"].keys() != after["modules"].keys():
        changes.append(f"modules added/removed: {sorted(before['modules'].keys() ^ after['modules'].keys())[:5]}")
    for name, entry in before["modules"].items():
        other = after["modules"].get(name)
        if other is None:
            continue
        for field, value in entry.items():
            if other.get(field) != value:
                changes.append(f"module {name or '<unet>'}: {field} changed ({value!r} -> {other.get(field)!r})")
    for name, value in before["weights"].items():
        if after["weights"].get(name) != value:
            changes.append(f"weight {name} changed")
    return changes


# --- payloads --------------------------------------------------------------------------------------------------
def png_b64(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def scene(rng: random.Random, height: int, width: int) -> np.ndarray:
    """Rectangles on a gradient: edges for canny, grey levels for the rest."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = np.linspace(0, 200, width, dtype=np.uint8)[None, :, None]
    for _ in range(rng.randint(1, 3)):
        y, x = rng.randrange(0, height - 8), rng.randrange(0, width - 8)
        image[y: y + rng.randint(6, height // 2), x: x + rng.randint(6, width // 2)] = rng.randrange(256)
    return image


GENERATION_MODULES = ("canny", "invert", "none", "blur_gaussian", "lineart_standard", "scribble_xdog", "threshold",
                      "shuffle", "tile_resample", "color", "recolor_luminance")
SIZES = (64, 72, 80, 96)


def random_unit(rng: random.Random, model: str, *, with_image: bool) -> dict:
    h, w = rng.choice(SIZES), rng.choice(SIZES)
    start = rng.choice([0.0, 0.0, 0.2, 0.5])
    unit = {
        "enabled": True, "module": rng.choice(GENERATION_MODULES), "model": model,
        "weight": rng.choice([0.5, 1.0, 1.0, 1.6]),
        "resize_mode": rng.choice(["Just Resize", "Crop and Resize", "Resize and Fill"]),
        "control_mode": rng.choice(["Balanced", "My prompt is more important", "ControlNet is more important"]),
        "guidance_start": start, "guidance_end": rng.choice([max(start, 0.6), 1.0]),
        "pixel_perfect": rng.random() < 0.3, "processor_res": rng.choice([-1, 64, 128]),
    }
    if with_image:
        unit["image"] = png_b64(scene(rng, h, w))
    return unit


def random_generation(rng: random.Random, models: list[str], *, hires: bool) -> tuple[str, dict]:
    img2img = rng.random() < 0.35
    width, height = rng.choice((64, 64, 72, 96)), rng.choice((64, 64, 80))
    units = [random_unit(rng, rng.choice(models), with_image=not img2img or rng.random() < 0.5)
             for _ in range(rng.choice((0, 1, 1, 2)))]
    body = {"prompt": rng.choice(["a cat", "a house by a lake", "(red:1.2) square"]), "negative_prompt": "blurry",
            "steps": rng.choice((1, 2, 3)), "width": width, "height": height, "seed": rng.randrange(2**32),
            "sampler_name": rng.choice(["Euler", "Euler a", "DPM++ 2M"]), "cfg_scale": rng.choice((1.0, 5.0, 7.0)),
            "batch_size": rng.choice((1, 1, 2))}
    if units:
        body["alwayson_scripts"] = {"controlnet": {"args": units}}
    if img2img:
        body["init_images"] = [png_b64(scene(rng, height, width))]
        body["denoising_strength"] = rng.choice((0.3, 0.75))
        return "/sdapi/v1/img2img", body
    if hires and rng.random() < 0.25:
        body.update(enable_hr=True, hr_scale=1.5, hr_second_pass_steps=1, denoising_strength=0.5,
                    hr_upscaler="Latent")
        for unit in units:
            unit["hr_option"] = rng.choice(["Both", "Low res only", "High res only"])
    return "/sdapi/v1/txt2img", body


PLAIN = {"prompt": "a plain cat", "steps": 4, "width": 64, "height": 64, "seed": 4242, "sampler_name": "Euler",
         "cfg_scale": 7.0}


# --- faults ----------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Soak:
    client: object  # httpx.Client on the server
    service: object  # its GenerationService (same process: faults reach into it)
    seed: int = 0
    log: list[str] = dataclasses.field(default_factory=list)
    statuses: Counter = dataclasses.field(default_factory=Counter)
    faults: Counter = dataclasses.field(default_factory=Counter)
    after_each: object = None  # callable(step_name) run after every generation and fault

    def __post_init__(self):
        self.rng = random.Random(self.seed)
        self.unet = self.service.checkpoint.model.unet
        self.baseline = unet_structure(self.unet)
        self.demo = next(e for e in self.service.models.entries() if e.stem.startswith("demo"))
        self.folder = self.demo.path.parent
        self.spare = self.folder / "soak-spare-controlnet.safetensors"
        shutil.copyfile(self.demo.path, self.spare)
        self.service.models.refresh()
        self.models = [self.demo.stem, self.spare.stem]
        self.hires = self._has_hires()
        self._fault_cycle = [self.truncated_model, self.replaced_model, self.raising_preprocessor,
                             self.interrupt_mid_step, self.raising_controlnet_forward, self.client_disconnects,
                             self.client_disconnects_while_waiting]

    def close(self) -> None:
        self.spare.unlink(missing_ok=True)
        self.service.models.refresh()

    def _has_hires(self) -> bool:
        probe = dict(PLAIN, steps=1, enable_hr=True, hr_scale=1.25, hr_second_pass_steps=1, denoising_strength=0.5)
        return self.client.post("/sdapi/v1/txt2img", json=probe).status_code == 200

    # the checks after each step
    def check(self, step: str) -> None:
        changes = structure_diff(self.baseline, unet_structure(self.unet))
        assert not changes, f"after {step}: " + "; ".join(changes[:8])
        assert self.service.queue.running is None and self.service.queue.pending == 0, f"after {step}: queue busy"
        if self.after_each is not None:
            self.after_each(step)

    def post(self, route: str, body: dict, expect: int | tuple = 200):
        response = self.client.post(route, json=body)
        self.statuses[response.status_code] += 1
        expected = expect if isinstance(expect, tuple) else (expect,)
        assert response.status_code in expected, f"{route}: {response.status_code} {response.text[:800]}"
        return response

    def run(self, generations: int) -> None:
        """`generations` random generations, a fault after every few (each fault in turn)."""
        every = max(1, generations // (2 * len(self._fault_cycle)))
        for i in range(generations):
            route, body = random_generation(self.rng, self.models, hires=self.hires)
            self.post(route, body)
            self.check(f"generation {i} ({route})")
            if (i + 1) % every == 0:
                fault = self._fault_cycle[(i // every) % len(self._fault_cycle)]
                fault()
                self.faults[fault.__name__] += 1
                self.check(fault.__name__)

    def _unit_body(self, model: str, *, module: str = "canny", steps: int = 2, image=None) -> dict:
        unit = {"enabled": True, "module": module, "model": model,
                "image": image if image is not None else png_b64(scene(self.rng, 64, 64))}
        return dict(PLAIN, steps=steps, alwayson_scripts={"controlnet": {"args": [unit]}})

    # 1. a model file truncated on disk, then restored
    def truncated_model(self) -> None:
        original = self.spare.read_bytes()
        body = self._unit_body(self.spare.stem)
        self.post("/sdapi/v1/txt2img", body)  # cached now
        self.spare.write_bytes(original[: len(original) // 2])
        error = self.post("/sdapi/v1/txt2img", body, expect=422).json()
        assert error["field"] == "model" and error["unit"] == 0, error
        self.spare.write_bytes(original)
        self.post("/sdapi/v1/txt2img", body)

    # 2. a model file replaced by other weights: the next generation uses them; restored, the first image returns
    def replaced_model(self) -> None:
        original = self.spare.read_bytes()
        body = self._unit_body(self.spare.stem)
        first = self.post("/sdapi/v1/txt2img", body).json()["images"][0]
        other = _scaled_copy(original, 0.5)
        self.spare.write_bytes(other)
        changed = self.post("/sdapi/v1/txt2img", body).json()["images"][0]
        assert changed != first, "the replaced weights were not used"
        self.spare.write_bytes(original)
        assert self.post("/sdapi/v1/txt2img", body).json()["images"][0] == first

    # 3. a preprocessor that raises (a bug in it): 500, and nothing stays hooked
    def raising_preprocessor(self) -> None:
        registry = self.service.preprocessors
        with _swapped_run(registry, "threshold", _raise):
            self.post("/sdapi/v1/txt2img", self._unit_body(self.demo.stem, module="threshold",
                                                           image=png_b64(_noise(self.rng))), expect=500)

    # 4. an interrupt in the middle of sampling: the image as it was, flagged interrupted
    def interrupt_mid_step(self) -> None:
        body = self._unit_body(self.demo.stem, steps=12)
        result = {}
        thread = threading.Thread(target=lambda: result.update(r=self.client.post("/sdapi/v1/txt2img", json=body)))
        thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = self.client.get("/sdapi/v1/progress").json()["state"]
            if state["sampling_step"] >= 2:
                break
            time.sleep(0.01)
        assert self.client.post("/sdapi/v1/interrupt").status_code == 200
        thread.join(120)
        response = result["r"]
        self.statuses[response.status_code] += 1
        assert response.status_code == 200, response.text[:500]
        info = json.loads(response.json()["info"])
        assert info["interrupted"] is True, "the interrupt came after the last step"

    # 5. an exception inside the ControlNet's forward: 500, the UNet untouched, the ControlNet's own hooks gone
    def raising_controlnet_forward(self) -> None:
        model = self.service.model_cache.get(self.demo.path, base_unet=None, base_id=self.service.checkpoint.model
                                             .short_hash())
        net = model.net
        before = unet_structure(net)
        inner = next(m for m in net.modules() if isinstance(m, nn.Conv2d))

        def fail(module, args):
            raise RuntimeError("injected failure inside the ControlNet forward")

        handle = inner.register_forward_pre_hook(fail)
        try:
            self.post("/sdapi/v1/txt2img", self._unit_body(self.demo.stem), expect=500)
        finally:
            handle.remove()
        changes = structure_diff(before, unet_structure(net))
        assert not changes, "the ControlNet kept: " + "; ".join(changes[:5])

    # 6. a client that sends a generation and hangs up while it runs
    def client_disconnects(self) -> None:
        _send_and_hang_up(self.client, "/sdapi/v1/txt2img", self._unit_body(self.demo.stem, steps=6))
        self._wait_idle()

    # 7. a client that hangs up while its request waits behind another one
    def client_disconnects_while_waiting(self) -> None:
        body = self._unit_body(self.demo.stem, steps=6)
        result = {}
        thread = threading.Thread(target=lambda: result.update(r=self.client.post("/sdapi/v1/txt2img", json=body)))
        thread.start()
        time.sleep(0.05)
        _send_and_hang_up(self.client, "/sdapi/v1/txt2img", self._unit_body(self.demo.stem, steps=2))
        thread.join(120)
        self.statuses[result["r"].status_code] += 1
        assert result["r"].status_code == 200
        self._wait_idle()

    def _wait_idle(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        time.sleep(0.05)
        while self.service.queue.running is not None or self.service.queue.pending:
            assert time.monotonic() < deadline, "the queue did not drain"
            time.sleep(0.02)


def _raise(image, params):
    raise RuntimeError("injected failure inside a preprocessor")


def _noise(rng: random.Random) -> np.ndarray:
    return np.random.default_rng(rng.randrange(2**32)).integers(0, 256, (64, 64, 3), dtype=np.uint8)


@contextlib.contextmanager
def _swapped_run(registry, name: str, run):
    original = registry.get(name)
    broken = dataclasses.replace(original, run=run)
    keys = [k for k, v in registry._lookup.items() if v is original]
    for key in keys:
        registry._lookup[key] = broken
    registry._by_name[original.name] = broken
    try:
        yield broken
    finally:
        for key in keys:
            registry._lookup[key] = original
        registry._by_name[original.name] = original


def _scaled_copy(data: bytes, factor: float) -> bytes:
    """The same safetensors file with every float tensor scaled: other weights, same layout."""
    from safetensors.torch import load, save

    tensors = load(data)
    return save({k: (v * factor if v.is_floating_point() else v).contiguous() for k, v in tensors.items()},
                metadata={"soak": "replaced"})


def _send_and_hang_up(client, route: str, body: dict) -> None:
    """POST over a raw socket and close it right after the request is sent (no response read)."""
    url = urlparse(str(client.base_url))
    payload = json.dumps(body).encode()
    head = (f"POST {route} HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(head + payload)
        time.sleep(0.1)  # the server has read it and started
