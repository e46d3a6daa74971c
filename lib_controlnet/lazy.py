"""Process-wide objects built on first use (the preprocessor registry, the result cache, the annotator models)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def lazy_singleton(factory: Callable[[], T]) -> Callable[[], T]:
    """A function returning one `factory()` result, built by the first caller; concurrent first calls wait for
    it rather than building two."""
    lock = threading.Lock()
    made: list[T] = []

    @functools.wraps(factory)
    def get() -> T:
        with lock:
            if not made:
                made.append(factory())
            return made[0]

    return get
