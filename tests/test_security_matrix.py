"""The security matrix, core side: hostile model files and hostile model names, through every loader and resolver.

- A pickle that needs code to load, in every accepted pickle extension and both torch containers (zip and
  the legacy stream), through every reader (control models, their cache, SD checkpoints, annotator weights):
  refused with a ModelFileError naming the file, and its code never runs.
- A model name with `..`, an absolute path, a URL, a NUL byte, a Windows path, or a symlink leading out of the
  model folder (listed, or swapped in after the scan): never resolves.
The HTTP side (names and images through the routes, decompression bombs, auth, binding) is
tests/standalone_server/test_server_security.py.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from annotator.neural.lineart import LINEART
from lib_controlnet import ModelCache
from lib_controlnet.errors import ModelFileError, NotFoundError, UnsafeFileError
from lib_controlnet.models.files import PICKLE_SUFFIXES, read_model
from lib_controlnet.models.loading import load_control_model
from lib_controlnet.models.registry import ModelRegistry
from standalone.checkpoint import read_checkpoint
from tests.tiny_models import SD_LIKE_UNET, controlnet_state_dict_from_unet, ldm_unet, save_state_dict

MARKER_ENV = "CN_SECURITY_MARKER"


class OpenFile:
    """Unpickling this creates a file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class Exec:
    """Unpickling this runs Python source."""

    def __init__(self, marker: Path):
        self.source = f"open({str(marker)!r}, 'w').close()"

    def __reduce__(self):
        return (exec, (self.source,))


class System:
    """Unpickling this runs a shell command."""

    def __init__(self, marker: Path):
        self.command = f"touch {marker}"

    def __reduce__(self):
        return (os.system, (self.command,))


PAYLOADS = (OpenFile, Exec, System)


def _write(path: Path, payload, container: str) -> Path:
    state = {"control_model.input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3), "extra": payload}
    if container == "zip":
        torch.save(state, path)
        assert zipfile.is_zipfile(path)
    else:  # what torch.save wrote before 1.6, and what plain pickle tools write
        with open(path, "wb") as f:
            pickle.dump(state, f, protocol=2)
    return path


def _readers():
    return {
        "read_model": read_model,
        "load_control_model": load_control_model,
        "model_cache": lambda path: ModelCache(2).get(path),
        "sd_checkpoint": read_checkpoint,
        "annotator_weights": LINEART.load,
    }


@pytest.mark.parametrize("suffix", PICKLE_SUFFIXES)
@pytest.mark.parametrize("container", ["zip", "legacy"])
@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.__name__)
def test_a_malicious_pickle_is_refused_by_every_reader_and_nothing_runs(tmp_path, suffix, container, payload):
    marker = tmp_path / "code-ran"
    path = _write(tmp_path / f"control_evil{suffix}", payload(marker), container)
    for name, reader in _readers().items():
        with pytest.raises(ModelFileError) as info:
            reader(path)
        assert path.name in str(info.value), name
        if container == "zip":
            assert isinstance(info.value, UnsafeFileError) and "safetensors" in str(info.value), name
        assert not marker.exists(), f"{name} ran the pickle's code"


def test_a_pickle_renamed_to_safetensors_is_not_unpickled(tmp_path):
    marker = tmp_path / "code-ran"
    path = _write(tmp_path / "control_evil.safetensors", OpenFile(marker), "zip")
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        load_control_model(path)
    assert not marker.exists()


# --- names ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def control_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("outside")
    return save_state_dict(controlnet_state_dict_from_unet(ldm_unet(SD_LIKE_UNET, seed=1), seed=2),
                           folder / "control_outside_canny.safetensors")


@pytest.fixture
def models(tmp_path, control_file) -> ModelRegistry:
    folder = tmp_path / "ControlNet"
    folder.mkdir()
    (folder / "control_inside_canny.safetensors").write_bytes(control_file.read_bytes())
    return ModelRegistry([folder])


HOSTILE_NAMES = [
    "..", ".", "../control_outside_canny", "../../etc/passwd", "sub/../../control_outside_canny",
    "/etc/passwd", "C:\\Windows\\System32\\config\\SAM", "..\\control_outside_canny",
    "http://127.0.0.1:1/control.safetensors", "file:///etc/passwd", "control_inside_canny\0.txt",
    "\0", "",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_model_name_never_resolves(models, name, control_file):
    with pytest.raises(NotFoundError) as info:
        models.resolve(name)
    assert info.value.field == "model"
    assert str(control_file.parent) not in str(info.value)  # server paths stay out of the answer


def test_the_absolute_path_of_a_real_model_file_does_not_resolve(models, control_file):
    inside = models.entries()[0].path
    for name in (str(inside), str(control_file), os.path.relpath(control_file, inside.parent)):
        with pytest.raises(NotFoundError):
            models.resolve(name)


def test_a_symlink_out_of_the_folder_is_neither_listed_nor_resolved(models, control_file):
    folder = models.folders[0]
    (folder / "control_link_canny.safetensors").symlink_to(control_file)
    (folder / "linked_dir").symlink_to(control_file.parent, target_is_directory=True)
    models.refresh()
    names = models.list_names()
    assert len(names) == 1 and names[0].startswith("control_inside_canny [")
    for name in ("control_link_canny", "control_outside_canny", "linked_dir"):
        with pytest.raises(NotFoundError):
            models.resolve(name)
    assert any("outside the model folders" in why for _, why in models.skipped)


def test_a_file_swapped_for_an_outside_symlink_after_the_scan_is_refused(models, control_file):
    entry = models.resolve("control_inside_canny")
    entry.path.unlink()
    entry.path.symlink_to(control_file)  # same name, now pointing out of the folder
    with pytest.raises(NotFoundError, match="outside the model folders"):
        models.resolve("control_inside_canny")


def test_a_symlink_inside_the_folder_still_works(models):
    folder = models.folders[0]
    (folder / "alias_canny.safetensors").symlink_to(folder / "control_inside_canny.safetensors")
    models.refresh()
    assert models.resolve("alias_canny").path.name == "alias_canny.safetensors"
