"""A1111's install hook: install what this extension needs and is missing, and change nothing else.

Every package already in the WebUI's environment is pinned to its installed version through a pip
constraints file, so installing a missing package can never upgrade or downgrade torch, numpy, pydantic,
gradio, protobuf, ... If a missing package cannot be installed within those pins, pip refuses, we say
which feature goes without it, and the WebUI starts anyway.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from importlib import metadata

# (requirement, what needs it). Packages A1111 itself ships (torch, numpy, pillow, safetensors, opencv) are
# never listed: the WebUI owns their versions.
REQUIREMENTS = (
    ("mediapipe==0.10.9", "the mediapipe_face and mediapipe_openpose preprocessors"),
    ("onnxruntime==1.23.2", "the dw_openpose_full and animal_openpose preprocessors"),
)
# Other distributions that provide the same import, so that e.g. a user's onnxruntime-gpu is never joined by
# a second `onnxruntime` package (two builds in one folder break both).
PROVIDED_BY = {
    "onnxruntime": ("onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino", "onnxruntime-silicon",
                    "onnxruntime-rocm", "onnxruntime-training"),
}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].strip()


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, str]:
    """Canonical name -> version of every distribution in this environment."""
    found = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(_canonical(name), dist.version)
    return found


def missing(requirements=REQUIREMENTS, present: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """The requirements no installed distribution provides (any version: an installed one is never changed)."""
    present = installed() if present is None else present

    def provided(name: str) -> bool:
        return any(_canonical(n) in present for n in (name, *PROVIDED_BY.get(_canonical(name), ())))

    return [(req, why) for req, why in requirements if not provided(_name(req))]


def constraints(present: dict[str, str]) -> str:
    """pip constraints that hold every installed distribution at its current version."""
    return "".join(f"{name}=={version}\n" for name, version in sorted(present.items()))


def pip_command(requirement: str, constraints_path: str) -> list[str]:
    return [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-c", constraints_path, requirement]


def install(requirements=REQUIREMENTS, run=subprocess.run) -> list[str]:
    """Install what is missing; returns the requirements that could not be installed."""
    todo = missing(requirements)
    failed = []
    if not todo:
        return failed
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(constraints(installed()))
        path = f.name
    try:
        for requirement, why in todo:
            print(f"[ControlNet] installing {requirement} (for {why})")
            if run(pip_command(requirement, path), check=False).returncode != 0:
                print(f"[ControlNet] could not install {requirement} without changing a package the WebUI pins; "
                      f"{why} will be unavailable")
                failed.append(requirement)
    finally:
        os.unlink(path)
    return failed


if __name__ == "__main__":  # A1111 runs this file as a script
    install()
