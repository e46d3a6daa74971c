"""Where annotator weight files live, and loading them into our networks with every key checked.

Nothing is ever downloaded. A file is looked for in the annotator folder (by default `models/annotators`
under the extension root) and, so that a copy of the reference extension's `annotator/downloads` tree
works as is, in the sub-folder the reference uses for it (`openpose/`, `hed/`, ...). The folder can be set
the way the reference sets it: the `control_net_modules_path` setting wins over the
`--controlnet-annotator-models-path` flag, and a relative path is taken from the host's data folder.

Files are read with `lib_controlnet.models.files.read_model` (safetensors, or `torch.load(weights_only=True)`;
pickles that need code are refused). A file whose keys or shapes are not the ones the network has is
refused with the keys that are missing or foreign, rather than loaded half-way.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import torch
from torch import nn

from lib_controlnet.errors import ModelFileError, NotFoundError
from lib_controlnet.models.files import read_model

EXTENSION_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FOLDER = EXTENSION_ROOT / "models" / "annotators"
ANNOTATORS_REPO = "https://huggingface.co/lllyasviel/Annotators"

# How many key names an error message lists before "and N more".
LISTED_KEYS = 6

_folder: Path | None = None
_folder_lock = threading.Lock()


def set_weights_folder(setting: str | os.PathLike | None = None, flag: str | os.PathLike | None = None,
                       data_path: str | os.PathLike | None = None) -> Path:
    """Choose the annotator folder as the reference does: the setting if non-empty, else the flag if given,
    else `models/annotators`. A relative path is joined to `data_path` (A1111's data folder) when given."""
    global _folder
    chosen = next((str(v).strip() for v in (setting, flag) if v is not None and str(v).strip()), "")
    folder = Path(chosen).expanduser() if chosen else DEFAULT_FOLDER
    if not folder.is_absolute() and data_path is not None:
        folder = Path(data_path) / folder
    with _folder_lock:
        _folder = folder
    return folder


def weights_folder() -> Path:
    with _folder_lock:
        return _folder if _folder is not None else DEFAULT_FOLDER


@dataclass(frozen=True, eq=False)
class WeightFile:
    """A published weight file: its accepted names (preferred first), the reference's sub-folder for it and
    the page it is published on."""

    names: tuple[str, ...]
    subfolder: str
    repo: str = ANNOTATORS_REPO
    repos: Mapping[str, str] = field(default_factory=dict)  # per-name exceptions to `repo`
    urls: Mapping[str, str] = field(default_factory=dict)  # full page of a name kept in a repo's sub-folder

    @property
    def name(self) -> str:
        return self.names[0]

    def url(self, name: str | None = None) -> str:
        name = name or self.name
        return self.urls.get(name) or f"{self.repos.get(name, self.repo)}/blob/main/{name}"

    def candidates(self, folder: Path) -> list[Path]:
        return [path for name in self.names for path in (folder / name, folder / self.subfolder / name)]

    def find(self, folder: Path | None = None) -> Path:
        """The first existing candidate, or NotFoundError saying which file, where to put it and where to get it."""
        folder = weights_folder() if folder is None else Path(folder)
        for path in self.candidates(folder):
            if path.is_file():
                return path
        if len(self.names) == 1:
            wanted = f"{self.name} (published at {self.url()})"
        else:
            wanted = "one of " + ", ".join(f"{n} ({self.url(n)})" for n in self.names)
        raise NotFoundError(
            f"annotator weights not found: this module needs {wanted}. Put the file in {folder} (or in its "
            f"'{self.subfolder}' sub-folder); nothing is downloaded automatically",
            field="module",
        )


def strip_prefix(prefix: str) -> Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """Key adapter for files saved from a wrapper (DataParallel's "module."): the prefix is dropped where present."""

    def adapt(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}

    return adapt


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:LISTED_KEYS])
    return shown + (f" and {len(keys) - LISTED_KEYS} more" if len(keys) > LISTED_KEYS else "")


def load_checked(net: nn.Module, state: Mapping[str, torch.Tensor], *, file_name: str, title: str, url: str,
                 ignore: tuple[str, ...] = ()) -> nn.Module:
    """Load `state` into `net` only if it has exactly the network's keys and shapes (BatchNorm's
    `num_batches_tracked` may be absent; keys matching an `ignore` pattern are allowed extras)."""
    expected = net.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    foreign = [k for k in state if k not in expected and not any(fnmatchcase(k, p) for p in ignore)]
    reshaped = [f"{k} {tuple(state[k].shape)} instead of {tuple(v.shape)}" for k, v in expected.items()
                if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or foreign or reshaped:
        problems = []
        if missing:
            problems.append(f"{len(missing)} of its {len(expected)} keys are missing ({_listed(missing)})")
        if foreign:
            problems.append(f"{len(foreign)} keys are not part of it ({_listed(foreign)})")
        if reshaped:
            problems.append(f"{len(reshaped)} tensors have the wrong shape ({_listed(reshaped)})")
        raise ModelFileError(
            f"{file_name} does not hold the {title} network: {'; '.join(problems)}. "
            f"Use the published file: {url}",
            field="module",
        )
    net.load_state_dict({k: state[k] for k in expected if k in state}, strict=False)
    return net


@dataclass(frozen=True)
class NetSpec:
    """How to turn one weight file into a ready network."""

    title: str
    weight: WeightFile
    build: Callable[[Mapping[str, torch.Tensor]], nn.Module]  # an untrained network fitting this state dict
    adapt: Callable[[Mapping[str, torch.Tensor]], Mapping[str, torch.Tensor]] = field(
        default=strip_prefix("module."))
    ignore: tuple[str, ...] = ()  # published keys the network does not use (a classifier head...)

    def load(self, path: str | os.PathLike) -> nn.Module:
        path = Path(path)
        raw = read_model(path)
        state = self.adapt(raw.state_dict)
        name = path.name if path.name in self.weight.names else f"{path.name} ({self.weight.name})"
        try:
            net = self.build(state)
        except (KeyError, IndexError, ValueError) as exc:
            raise ModelFileError(f"{name} does not hold the {self.title} network ({exc!r}). "
                                 f"Use the published file: {self.weight.url()}", field="module") from exc
        load_checked(net, state, file_name=name, title=self.title, url=self.weight.url(), ignore=self.ignore)
        return net.eval().requires_grad_(False)
