"""The one place that imports mediapipe: lazily, and with an error that tells the user what to install."""

from __future__ import annotations

from types import ModuleType

from lib_controlnet.errors import MissingDependencyError

# Newer mediapipe wheels (>= 0.10.30, 1.x) dropped `mediapipe.solutions` and the models it bundles; 0.10.9
# is the last one that keeps them, works with A1111's protobuf 3.20 and needs no jax or torch.
PINNED = "mediapipe==0.10.9 protobuf==3.20.0"


def solutions(feature: str) -> ModuleType:
    """`mediapipe.solutions`, or MissingDependencyError naming `feature` and the version to install."""
    try:
        import mediapipe
    except Exception as exc:  # ImportError, or a protobuf mismatch surfacing as TypeError at import
        raise MissingDependencyError(
            f"{feature} needs the mediapipe package, which could not be imported ({exc}); "
            f"install it with: pip install {PINNED}",
            field="module",
        ) from exc
    found = getattr(mediapipe, "solutions", None)
    if found is None:
        version = getattr(mediapipe, "__version__", "unknown")
        raise MissingDependencyError(
            f"{feature} needs mediapipe's bundled 'solutions' models, which mediapipe {version} no longer "
            f"ships; install: pip install {PINNED}",
            field="module",
        )
    return found
