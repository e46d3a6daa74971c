"""Which control model files exist, under which names, and what a requested name means.

Names are the reference's `"<stem> [<hash8>]"`, hash8 being A1111's old model hash, so model names in
payloads, infotexts and saved presets written for the reference resolve here too. A requested name is
matched only against the names found by scanning the model folders: it is never joined onto a path, and
every file is checked (symlinks resolved) to lie inside one of the folders.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import NotFoundError

MODEL_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".bin")
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
NO_MODEL = "None"
SORT_ORDERS = ("name", "date", "path name")

# A1111's old model hash reads this window of the file; a shorter file hashes what is there (maybe nothing).
HASH_OFFSET = 0x100000
HASH_LENGTH = 0x10000


def old_model_hash(path: str | os.PathLike) -> str:
    """First 8 hex digits of sha256 over 64 KiB at offset 1 MiB (A1111's `sd_models.model_hash`);
    "NOFILE" when the file does not exist."""
    try:
        with open(path, "rb") as f:
            f.seek(HASH_OFFSET)
            return hashlib.sha256(f.read(HASH_LENGTH)).hexdigest()[:8]
    except FileNotFoundError:
        return "NOFILE"


_hash_cache: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


def cached_model_hash(path: str | os.PathLike) -> str:
    """`old_model_hash`, remembered per (path, size, mtime) so a rescan costs one stat per file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "NOFILE"
    key = (os.fspath(path), st.st_size, st.st_mtime_ns)
    with _hash_lock:
        found = _hash_cache.get(key)
    if found is None:
        found = old_model_hash(path)
        with _hash_lock:
            _hash_cache[key] = found
    return found


@dataclass(frozen=True)
class ModelEntry:
    """One model on disk: a weight file, or a diffusers folder (config.json + weights)."""

    path: Path  # what the loader opens (the file, or the diffusers folder)
    folder: Path  # the registered model folder it was found in (resolved)
    mtime: float
    is_diffusers_folder: bool = False

    @property
    def stem(self) -> str:
        return self.path.name if self.is_diffusers_folder else self.path.stem

    @property
    def hashed_file(self) -> Path:
        """The file whose bytes give the hash: the weights themselves for a diffusers folder."""
        if self.is_diffusers_folder:
            for weights in DIFFUSERS_WEIGHTS:
                if (self.path / weights).is_file():
                    return self.path / weights
        return self.path

    @property
    def hash(self) -> str:
        return cached_model_hash(self.hashed_file)

    @property
    def name(self) -> str:
        return f"{self.stem} [{self.hash}]"


class ModelRegistry:
    """Model files under an ordered list of folders (earlier folders win when names collide).

    `refresh()` rescans; `list_names()` is /controlnet/model_list; `resolve(name)` is what a unit's `model`
    means. Folders that do not exist are skipped (the reference's optional folders often don't).
    """

    def __init__(self, folders: Iterable[str | os.PathLike] = (), *, sort_by: str = "name", name_filter: str = ""):
        self._folders = [Path(f) for f in folders if f]
        self.sort_by = sort_by if sort_by in SORT_ORDERS else "name"
        self.name_filter = name_filter
        self._lock = threading.Lock()
        self._entries: list[ModelEntry] | None = None
        self.skipped: list[tuple[Path, str]] = []  # (path, why) of files left out, for the log

    @property
    def folders(self) -> list[Path]:
        return list(self._folders)

    def set_folders(self, folders: Iterable[str | os.PathLike]) -> None:
        with self._lock:
            self._folders = [Path(f) for f in folders if f]
            self._entries = None

    # --- scanning -------------------------------------------------------------------------------------
    def refresh(self) -> None:
        entries: list[ModelEntry] = []
        skipped: list[tuple[Path, str]] = []
        roots = self._roots()
        for root in roots:
            found = list(self._scan_folder(root, roots, skipped))
            entries.extend(self._ordered(found))
        with self._lock:
            self._entries = entries
            self.skipped = skipped

    def entries(self) -> list[ModelEntry]:
        """Every model, deduplicated by name (first folder wins), in listing order."""
        with self._lock:
            entries = self._entries
        if entries is None:
            self.refresh()
            with self._lock:
                entries = self._entries
        seen, unique = set(), []
        for entry in entries:
            if entry.name not in seen:
                seen.add(entry.name)
                unique.append(entry)
        return unique

    def list_names(self, *, refresh: bool = False) -> list[str]:
        """Model names for /controlnet/model_list (without "None")."""
        if refresh:
            self.refresh()
        return [entry.name for entry in self.entries()]

    def _roots(self) -> list[Path]:
        roots = []
        for folder in self._folders:
            if folder.is_dir():
                real = folder.resolve()
                if real not in roots:
                    roots.append(real)
        return roots

    def _scan_folder(self, root: Path, roots: Sequence[Path], skipped: list) -> Iterable[ModelEntry]:
        visited: set[Path] = set()
        pending = [root]
        while pending:
            directory = pending.pop()
            real_dir = directory.resolve()
            if real_dir in visited:  # a symlink loop, or two links to one folder
                continue
            visited.add(real_dir)
            try:
                children = sorted(os.scandir(directory), key=lambda e: e.name)
            except OSError as exc:
                skipped.append((directory, f"cannot be listed: {exc.strerror}"))
                continue
            for child in children:
                path = Path(child.path)
                try:
                    real = path.resolve(strict=True)
                except (OSError, RuntimeError):
                    skipped.append((path, "broken link"))
                    continue
                if not _inside_any(real, roots):
                    skipped.append((path, "a link to a place outside the model folders"))
                    continue
                if real.is_dir() and not _is_diffusers_folder(real):
                    pending.append(path)
                    continue
                entry = None
                if real.is_dir():
                    entry = ModelEntry(path, root, _mtime(real), is_diffusers_folder=True)
                elif real.is_file() and path.suffix.lower() in MODEL_SUFFIXES:
                    entry = ModelEntry(path, root, _mtime(real))
                if entry is not None and entry.stem == NO_MODEL:
                    skipped.append((path, '"None" means no model'))
                elif entry is not None:
                    yield entry

    def _ordered(self, found: list[ModelEntry]) -> list[ModelEntry]:
        text = self.name_filter.strip().lower()
        if text:
            found = [e for e in found if text in e.path.name.lower()]
        if self.sort_by == "date":
            return sorted(found, key=lambda e: -e.mtime)
        if self.sort_by == "path name":
            return sorted(found, key=lambda e: str(e.path))
        return sorted(found, key=lambda e: e.path.name)

    # --- names -> files --------------------------------------------------------------------------------
    def resolve(self, name: str) -> ModelEntry:
        """The model a requested name means, by the reference's rules, in order:

        1. the exact name `"stem [hash]"`;
        2. the file stem, case-insensitively;
        3. the shortest stem containing the text, case-insensitively (so `"canny"` finds a canny model).

        "None", an empty name, or one that looks like a path never resolve (NotFoundError naming it).
        """
        if not isinstance(name, str) or not name.strip() or name.strip() == NO_MODEL:
            raise NotFoundError(f"no control model selected (model is {name!r})", field="model")
        if any(sep in name for sep in ("/", "\\", "\0")) or name.strip() in (".", ".."):
            raise NotFoundError(f"model {name!r} not found: a model name is not a path", field="model")
        entries = self.entries()
        entry = _match(name, entries)
        if entry is None:
            self.refresh()  # a file added since the last scan
            entries = self.entries()
            entry = _match(name, entries)
        if entry is None:
            # Server paths stay out of the message: it goes back to API clients.
            raise NotFoundError(
                f"model {name!r} not found among the {len(entries)} control models (see /controlnet/model_list)",
                field="model",
            )
        # The file may have changed since the scan: check again where it really is.
        try:
            real = entry.path.resolve(strict=True)
        except (OSError, RuntimeError):
            raise NotFoundError(f"model {name!r}: its file {entry.path.name} is gone", field="model") from None
        if not _inside_any(real, self._roots()):
            raise NotFoundError(f"model {name!r}: its file is outside the model folders", field="model")
        return entry


def _match(name: str, entries: Sequence[ModelEntry]) -> ModelEntry | None:
    for entry in entries:
        if entry.name == name:
            return entry
    wanted = name.lower()
    for entry in entries:
        if entry.stem.lower() == wanted:
            return entry
    containing = [e for e in entries if wanted in e.stem.lower()]
    return min(containing, key=lambda e: len(e.stem), default=None)


def _inside_any(real: Path, roots: Sequence[Path]) -> bool:
    return any(real == root or root in real.parents for root in roots)


def _is_diffusers_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and any((path / w).is_file() for w in DIFFUSERS_WEIGHTS)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
