"""Weight files: where they are looked for, what a missing or wrong file says, and how loaded networks are
cached and placed (small networks, real files in a temporary folder)."""

import os
import pickle

import pytest
import torch
from nn_test_helpers import random_state

from annotator.neural import mlsd, softedge, weights
from annotator.neural.runtime import MIN_CAPACITY, AnnotatorModels
from lib_controlnet.errors import ModelFileError, NotFoundError, UnsafeFileError


def _save(folder, spec, state=None, name=None, prefix=""):
    state = random_state(spec) if state is None else state
    path = folder / (name or spec.weight.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({prefix + k: v for k, v in state.items()}, path)
    return path


def test_missing_file_names_file_folder_and_where_it_is_published(tmp_path):
    with pytest.raises(NotFoundError) as info:
        AnnotatorModels(device="cpu", folder=tmp_path).get(softedge.PIDINET)
    message = str(info.value)
    assert "table5_pidinet.pth" in message and str(tmp_path) in message and "'pidinet' sub-folder" in message
    assert "https://huggingface.co/lllyasviel/Annotators/blob/main/table5_pidinet.pth" in message
    assert "nothing is downloaded" in message and info.value.status_code == 404


def test_file_in_the_references_sub_folder_is_found(tmp_path):
    _save(tmp_path / "pidinet", softedge.PIDINET, prefix="module.")  # as the reference stores and saves it
    net = AnnotatorModels(device="cpu", folder=tmp_path).get(softedge.PIDINET)
    assert isinstance(net, softedge.PiDiNet) and not net.training
    assert all(not p.requires_grad for p in net.parameters())


def test_wrong_keys_say_which_are_missing_and_which_are_foreign(tmp_path):
    state = random_state(mlsd.MLSD)
    del state["block23.conv3.weight"], state["block23.conv3.bias"]
    state["extra.weight"] = torch.zeros(1)
    _save(tmp_path, mlsd.MLSD, state)
    with pytest.raises(ModelFileError) as info:
        AnnotatorModels(device="cpu", folder=tmp_path).get(mlsd.MLSD)
    message = str(info.value)
    assert "mlsd_large_512_fp32.pth" in message and "2 of its 362 keys are missing" in message
    assert "block23.conv3.weight" in message and "block23.conv3.bias" in message and "extra.weight" in message
    assert "https://huggingface.co/lllyasviel/Annotators/blob/main/mlsd_large_512_fp32.pth" in message


def test_another_networks_file_under_this_name_is_refused_with_shapes(tmp_path):
    # lineart_coarse's file is the same network as lineart's; PiDiNet's is not MLSD's.
    _save(tmp_path, softedge.PIDINET, name="mlsd_large_512_fp32.pth")
    with pytest.raises(ModelFileError, match="keys are missing"):
        AnnotatorModels(device="cpu", folder=tmp_path).get(mlsd.MLSD)
    state = random_state(mlsd.MLSD)
    state["block23.conv3.weight"] = torch.zeros(9, 64, 1, 1)
    _save(tmp_path, mlsd.MLSD, state)
    with pytest.raises(ModelFileError, match=r"block23.conv3.weight \(9, 64, 1, 1\) instead of \(16, 64, 1, 1\)"):
        AnnotatorModels(device="cpu", folder=tmp_path).get(mlsd.MLSD)


class _Payload:
    def __reduce__(self):
        return (print, ("this would run",))


def test_a_pickle_that_needs_code_is_refused_not_run(tmp_path):
    with open(tmp_path / "table5_pidinet.pth", "wb") as f:
        pickle.dump({"state_dict": _Payload()}, f, protocol=2)
    with pytest.raises(UnsafeFileError):
        AnnotatorModels(device="cpu", folder=tmp_path).get(softedge.PIDINET)


def test_loaded_once_reloaded_when_the_file_changes_and_evicted_by_lru(tmp_path):
    models = AnnotatorModels(device="cpu", folder=tmp_path, capacity=1)
    path = _save(tmp_path, mlsd.MLSD)
    first = models.get(mlsd.MLSD)
    assert models.get(mlsd.MLSD) is first and models.loads == 1
    state = random_state(mlsd.MLSD, seed=1)
    torch.save(state, path)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    second = models.get(mlsd.MLSD)
    assert second is not first and models.loads == 2
    assert torch.equal(second.block23.conv3.weight, state["block23.conv3.weight"])
    # At least five networks stay (openpose_full needs three in one call, ip-adapter_pulid five) whatever the
    # capacity asked: MIN_CAPACITY more files evict the MLSD one, the least recently used.
    assert MIN_CAPACITY == 5
    names = [f"dir{i}" for i in range(MIN_CAPACITY)]
    for name in names:
        (tmp_path / name).mkdir()
        _save(tmp_path / name, softedge.PIDINET)
    for name in names[:-1]:
        models.get(softedge.PIDINET, folder=tmp_path / name)
    assert len(models) == MIN_CAPACITY  # the MLSD network and four others, none evicted yet
    models.get(softedge.PIDINET, folder=tmp_path / names[-1])
    assert len(models) == MIN_CAPACITY and models.loads == 2 + MIN_CAPACITY
    models.get(softedge.PIDINET, folder=tmp_path / names[0])  # still there
    assert models.loads == 2 + MIN_CAPACITY
    models.get(mlsd.MLSD)  # evicted: read again
    assert models.loads == 3 + MIN_CAPACITY


def test_running_puts_networks_on_the_compute_device_and_back(tmp_path):
    models = AnnotatorModels(device="cuda", folder=tmp_path)  # pretend the UNet lives on an accelerator
    _save(tmp_path, mlsd.MLSD)
    net = models.get(mlsd.MLSD)
    moves = []
    original = net.to

    def recording_to(device=None, dtype=None):  # a CPU-only stand-in for watching the GPU
        moves.append((str(torch.device(device)) if device is not None else None, dtype))
        return original("cpu", dtype)

    net.to = recording_to
    with models.running(net) as device:
        assert device.type == "cuda" and moves == [("cuda", torch.float32)]
        assert not torch.is_grad_enabled()
    assert moves[-1][0] == "cpu"
    with pytest.raises(RuntimeError), models.running(net):
        raise RuntimeError("boom")
    assert moves[-2:] == [("cuda", torch.float32), ("cpu", None)]


def test_folder_precedence_is_the_references(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "_folder", None)
    assert weights.weights_folder() == weights.DEFAULT_FOLDER
    assert weights.set_weights_folder("", str(tmp_path / "flag")) == tmp_path / "flag"
    assert weights.set_weights_folder(str(tmp_path / "setting"), str(tmp_path / "flag")) == tmp_path / "setting"
    assert weights.set_weights_folder("relative", None, data_path=tmp_path) == tmp_path / "relative"
    assert weights.set_weights_folder(None, None) == weights.DEFAULT_FOLDER
    assert weights.weights_folder() == weights.DEFAULT_FOLDER


def test_registry_modules_read_the_configured_folder(tmp_path, monkeypatch, photo):
    from lib_controlnet.preprocessors import ResultCache, default_registry, resolve_params, run_preprocessor

    monkeypatch.setattr(weights, "_folder", None)
    weights.set_weights_folder(str(tmp_path))
    registry = default_registry()
    sketch, mlsd_module = registry.get("t2ia_sketch_pidi"), registry.get("mlsd")
    with pytest.raises(NotFoundError, match="table5_pidinet.pth"):
        run_preprocessor(sketch, photo, resolve_params(sketch, 128), cache=ResultCache(0))
    _save(tmp_path / "pidinet", softedge.PIDINET)
    _save(tmp_path, mlsd.MLSD)
    out = run_preprocessor(sketch, photo, resolve_params(sketch, 128), cache=ResultCache(0)).map
    assert out.shape == (128, 160, 3) and set(out.ravel().tolist()) <= {0, 255}
    lines = run_preprocessor(mlsd_module, photo, resolve_params(mlsd_module, 128, 0.05, 0.5), cache=ResultCache(0))
    assert lines.map.shape == (128, 160, 3)
