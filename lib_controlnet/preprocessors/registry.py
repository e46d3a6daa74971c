"""The set of known preprocessors, looked up by name, label or alias.

The built-in ones are the `PREPROCESSORS` tuples of the modules in `declarations/`: adding a preprocessor
is adding a file there (or a line to a family's file). Other code may `register` more at run time.
"""

from __future__ import annotations

import importlib
import pkgutil

from lib_controlnet.lazy import lazy_singleton

from .declaration import Preprocessor

DECLARATIONS_PACKAGE = __package__ + ".declarations"


class Registry:
    def __init__(self, preprocessors=()):
        self._by_name: dict[str, Preprocessor] = {}
        self._lookup: dict[str, Preprocessor] = {}
        for preprocessor in preprocessors:
            self.register(preprocessor)

    def register(self, preprocessor: Preprocessor) -> None:
        keys = {preprocessor.name, preprocessor.label, *preprocessor.aliases}
        taken = sorted(k for k in keys if k in self._lookup)
        if taken:
            raise ValueError(f"preprocessor {preprocessor.name!r}: {taken} already registered")
        self._by_name[preprocessor.name] = preprocessor
        for key in keys:
            self._lookup[key] = preprocessor

    def get(self, name: str) -> Preprocessor | None:
        """By module name, label or alias (exact, as the reference matches)."""
        return self._lookup.get(name) if isinstance(name, str) else None

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def __iter__(self):
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def sorted(self) -> list[Preprocessor]:
        """The reference's list order: "none" first, then by priority (high first), then label (Z to A)."""
        head = [p for p in self if p.name == "none"]
        rest = [p for p in self if p.name != "none"]
        rest.sort(key=lambda p: str(p.priority).zfill(8) + p.label, reverse=True)
        return head + rest

    def tags(self) -> list[str]:
        """"All" followed by every control type any preprocessor serves, sorted."""
        return ["All"] + sorted({tag for p in self for tag in p.tags})


def builtin_preprocessors() -> list[Preprocessor]:
    """Every PREPROCESSORS tuple of the modules in `declarations/`, in file-name order."""
    package = importlib.import_module(DECLARATIONS_PACKAGE)
    found: list[Preprocessor] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{DECLARATIONS_PACKAGE}.{info.name}")
        found.extend(getattr(module, "PREPROCESSORS", ()))
    return found


@lazy_singleton
def default_registry() -> Registry:
    """The process-wide registry of built-in preprocessors (built on first use)."""
    return Registry(builtin_preprocessors())
