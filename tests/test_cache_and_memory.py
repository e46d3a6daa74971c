"""Model cache (LRU, reload on change, eviction frees) and device placement (normal and low-VRAM)."""

import gc
import os
import weakref

import pytest
import torch

from lib_controlnet import BoundUnit, CallInfo, ControlHook, ModelCache
from tests.tiny_models import SD_LIKE_UNET, controlnet_state_dict_from_unet, ldm_unet, save_state_dict


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cache")
    unet = ldm_unet(SD_LIKE_UNET, seed=31)
    sd = controlnet_state_dict_from_unet(unet, seed=32)
    return unet, sd, [save_state_dict(sd, d / f"cn{i}.safetensors") for i in range(3)]


def test_lru_hit_refreshes_and_capacity_evicts_oldest(files):
    _, _, (a, b, c) = files
    cache = ModelCache(capacity=2)
    ma = cache.get(a)
    cache.get(b)
    assert cache.get(a) is ma  # hit: same object, and now the most recent
    cache.get(c)  # evicts b, the least recently used (FIFO would have evicted a)
    assert a in cache and c in cache and b not in cache


def test_eviction_really_frees_the_model(files):
    _, _, (a, b, _) = files
    cache = ModelCache(capacity=1)
    ref = weakref.ref(cache.get(a).net)
    cache.get(b)
    gc.collect()
    assert ref() is None


def test_changed_file_is_reloaded(files, tmp_path):
    _, sd, _ = files
    path = save_state_dict(sd, tmp_path / "edit.safetensors")
    cache = ModelCache()
    first = cache.get(path)
    assert cache.get(path) is first
    save_state_dict({k: v * 2 for k, v in sd.items()}, path)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = cache.get(path)
    assert second is not first
    key = "zero_convs.0.0.weight"
    assert torch.equal(second.net.state_dict()[key], 2 * first.net.state_dict()[key])


def test_capacity_change_and_clear(files):
    _, _, paths = files
    cache = ModelCache(capacity=3)
    for p in paths:
        cache.get(p)
    cache.set_capacity(1)
    assert len(cache) == 1 and paths[-1] in cache
    cache.clear()
    assert len(cache) == 0


class MoveLog:
    """Records every device move of a model (a CPU-only stand-in for watching the GPU)."""

    def __init__(self, model, monkeypatch):
        self.moves = []
        original = model.to

        def to(device=None, dtype=None):
            if device is not None:
                self.moves.append(str(torch.device(device)))
            return original(device if device is None else "cpu", dtype)

        monkeypatch.setattr(model, "to", to)


@pytest.mark.parametrize("low_vram", [False, True])
def test_placement_normal_and_low_vram(files, monkeypatch, low_vram):
    unet, sd, (a, *_) = files
    cache = ModelCache()
    model = cache.get(a)
    log = MoveLog(model, monkeypatch)
    hook = ControlHook(unet, [BoundUnit(model, torch.rand(1, 3, 64, 64), low_vram=low_vram)], lambda *a: CallInfo())
    hook.placement.device = torch.device("cuda")  # pretend the UNet lives on an accelerator
    x, t, ctx = torch.randn(2, 4, 8, 8), torch.tensor([1.0, 1.0]), torch.randn(2, 3, 32)
    with torch.no_grad(), hook.applied():
        for _ in range(3):
            unet(x, t, ctx)
    if low_vram:
        # parked on the CPU, visits the device for each forward only
        assert log.moves == ["cpu"] + ["cuda", "cpu"] * 3 + ["cpu"]
    else:
        # to the device on every use (no-op once there), back to the CPU when the generation ends
        assert log.moves == ["cuda"] * 3 + ["cpu"]
    assert log.moves[-1] == "cpu"


def test_model_takes_the_host_unets_dtype_at_attach(files):
    unet, sd, (a, *_) = files
    model = ModelCache().get(a)
    hook = ControlHook(unet, [BoundUnit(model, torch.rand(1, 3, 64, 64))])
    hook.placement.dtype = torch.bfloat16
    hook.attach()
    try:
        assert model.dtype == torch.bfloat16
    finally:
        hook.remove()


def test_fp8_stored_unet_runs_control_models_in_fp16(files):
    unet, sd, (a, *_) = files
    model = ModelCache().get(a)
    first = next(unet.parameters())
    original = first.data
    first.data = original.to(torch.float8_e4m3fn)  # what A1111's fp8 weight storage leaves on the UNet
    try:
        hook = ControlHook(unet, [BoundUnit(model, torch.rand(1, 3, 64, 64))])
        assert hook.placement.dtype == torch.float16
    finally:
        first.data = original


def test_difference_model_is_rebuilt_when_the_host_checkpoint_changes(files, tmp_path):
    unet, sd, (plain, _, _) = files
    unet_sd = unet.state_dict()
    diff = {k: (v - unet_sd[k] if k in unet_sd else v) for k, v in sd.items()}
    path = save_state_dict({**diff, "difference": torch.tensor([])}, tmp_path / "diff.safetensors", prefix="")
    cache = ModelCache(capacity=3)
    first = cache.get(path, base_unet=unet_sd, base_id="ckpt-a")
    assert first.depends_on_base and cache.get(path, base_unet=unet_sd, base_id="ckpt-a") is first
    other = {k: v + 1 for k, v in unet_sd.items()}
    second = cache.get(path, base_unet=other, base_id="ckpt-b")
    assert second is not first  # rebuilt on the new checkpoint's weights
    key = "input_blocks.1.0.in_layers.2.weight"
    assert torch.allclose(second.net.state_dict()[key], first.net.state_dict()[key] + 1)
    model = cache.get(plain, base_id="ckpt-a")  # an ordinary model ignores the base
    assert not model.depends_on_base and cache.get(plain, base_id="ckpt-b") is model


def test_models_built_on_another_checkpoint_are_dropped_when_the_host_says_so(files, tmp_path):
    """What the A1111 adapter does when a checkpoint loads: a model bound to the old base goes (with the old UNet's
    weights it refers to), one bound to the new base and ordinary models stay."""
    unet, sd, (plain, _, _) = files
    unet_sd = unet.state_dict()
    diff = {k: (v - unet_sd[k] if k in unet_sd else v) for k, v in sd.items()}
    old_path = save_state_dict({**diff, "difference": torch.tensor([])}, tmp_path / "d1.safetensors", prefix="")
    new_path = save_state_dict({**diff, "difference": torch.tensor([])}, tmp_path / "d2.safetensors", prefix="")
    cache = ModelCache(capacity=3)
    ref = weakref.ref(cache.get(old_path, base_unet=unet_sd, base_id="ckpt-a").net)
    kept = cache.get(new_path, base_unet=unet_sd, base_id="ckpt-b")
    ordinary = cache.get(plain, base_id="ckpt-a")
    assert cache.drop_other_bases("ckpt-b") == 1
    gc.collect()
    assert ref() is None and old_path not in cache
    assert cache.get(new_path, base_unet=unet_sd, base_id="ckpt-b") is kept and cache.get(plain) is ordinary
    assert cache.drop_other_bases("ckpt-b") == 0
