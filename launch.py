"""Run the standalone ControlNet host: `python launch.py` installs what is missing, then serves on 127.0.0.1:7860.

Works with the Python that runs it (3.10 or 3.11; a fresh virtual environment is fine) and installs into that
interpreter's environment, never another one:
  1. torch first, and only if no torch is installed (a torch already there is kept, whatever its build, so a
     GPU user installs the CUDA build they want before running this): exactly torch==2.13.0+cpu, the CPU build,
     so that nothing here can pull a CUDA build (which a bare "torch" requirement would). Where the package
     index has no such build, set TORCH_INDEX_URL to one that does (e.g. PyTorch's CPU index).
  2. requirements-standalone.txt, with the installed torch pinned so that nothing can replace it;
  3. two packages with --no-deps (their declared dependencies would pull torchvision and a CUDA torch):
     stable-diffusion-sdkit (ldm's UNet and VAE code) and open_clip_torch (only for its CLIP vocabulary file).
Requirements that are already satisfied are not touched, so later starts run no pip at all.

Then it starts the server (standalone/server): the page at /, A1111's /sdapi/v1 routes, every /controlnet route.
With no checkpoint in <models-dir>/Stable-diffusion (and no --ckpt) it runs the embedded toy model (an SD1.x-layout
checkpoint and a canny ControlNet trained in this repository on coloured shapes, 64x64), and every response says
so; `--demo sd15` / `--demo sdxl` serve small random-weight models of those layouts instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TORCH = "torch==2.13.0+cpu"  # the local version label: a CPU build or nothing, never CUDA
REQUIREMENTS_FILE = ROOT / "requirements-standalone.txt"
NO_DEPS = ("stable-diffusion-sdkit==2.1.5", "open_clip_torch==3.3.0")
SUPPORTED_PYTHONS = ((3, 10), (3, 11))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Install what is missing, then run the standalone ControlNet host (A1111-compatible API "
                    "and a page) on this machine.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only). 0.0.0.0 lets every "
                             "machine that can reach this one use the page and the whole API (generate, list the "
                             "model files, interrupt jobs): add --api-auth there")
    parser.add_argument("--api-auth", default=None, metavar="USER:PASSWORD[,USER:PASSWORD...]",
                        help="require HTTP Basic credentials for every request: API, page and its websocket "
                             "(A1111's flag and format)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on (default: 7860)")
    parser.add_argument("--ckpt", type=Path, default=None,
                        help="SD1.x, SD2.x or SDXL checkpoint (.safetensors, .ckpt) to run; default: the first usable "
                             "one in <models-dir>/Stable-diffusion, else the embedded toy model")
    parser.add_argument("--demo", choices=("toy", "sd15", "sdxl"), default=None,
                        help="serve a demo model (and its ControlNet) instead of any checkpoint: toy, the embedded "
                             "one trained on coloured shapes (the default when there is no checkpoint); sd15 or "
                             "sdxl, small random-weight models of that layout, whose images are noise")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models",
                        help="models folder with Stable-diffusion/ and ControlNet/ inside (default: ./models)")
    parser.add_argument("--controlnet-dir", type=Path, action="append", default=[],
                        help="another folder of ControlNet models (repeatable)")
    parser.add_argument("--skip-install", action="store_true", help="install nothing; fail if something is missing")
    parser.add_argument("--install-only", action="store_true", help="install what is missing, then exit")
    return parser.parse_args(argv)


# --- what is installed -------------------------------------------------------------------------------------
def _requirement_class():
    try:
        from packaging.requirements import Requirement
    except ImportError:  # a fresh venv has no packaging, but pip vendors it
        from pip._vendor.packaging.requirements import Requirement
    return Requirement


def read_requirements(path: Path) -> list[str]:
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def is_satisfied(requirement: str) -> bool:
    req = _requirement_class()(requirement)
    version = installed_version(req.name)
    return version is not None and req.specifier.contains(version, prereleases=True)


def missing(requirements) -> list[str]:
    return [r for r in requirements if not is_satisfied(r)]


# --- installing ----------------------------------------------------------------------------------------------
def pip(args: list[str], constraints: str | None = None) -> None:
    command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *args]
    with tempfile.TemporaryDirectory() as tmp:
        if constraints:
            path = Path(tmp) / "constraints.txt"
            path.write_text(constraints, encoding="utf-8")
            command[4:4] = ["-c", str(path)]
        print("launch.py:", " ".join(command), flush=True)
        subprocess.run(command, check=True)


def install_missing() -> None:
    print(f"launch.py: checking the packages of {sys.prefix} (Python {sys.version.split()[0]})", flush=True)
    if installed_version("torch") is None:
        index = os.environ.get("TORCH_INDEX_URL")
        try:
            pip([TORCH, *(["--extra-index-url", index] if index else [])])
        except subprocess.CalledProcessError:
            sys.exit(f"launch.py: pip found no {TORCH} for Python {sys.version.split()[0]} here. Set TORCH_INDEX_URL "
                     "to an index that has it (e.g. PyTorch's CPU wheel index), or install the torch you want "
                     "into this environment first: launch.py keeps an installed torch.")
    pinned_torch = f"torch=={installed_version('torch')}\n"
    todo = missing(read_requirements(REQUIREMENTS_FILE))
    if todo:
        pip(todo, constraints=pinned_torch)
    todo = missing(NO_DEPS)
    if todo:
        pip(["--no-deps", *todo])
    importlib.invalidate_caches()


def check_python() -> None:
    if sys.version_info[:2] < (3, 10):  # noqa: UP036 - launch.py may be run by any python3 on PATH
        sys.exit(f"launch.py needs Python 3.10 or 3.11, this is {sys.version.split()[0]}")
    if sys.version_info[:2] not in SUPPORTED_PYTHONS:
        print(f"launch.py: Python {sys.version.split()[0]} is untested here (3.10 and 3.11 are)", flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    check_python()
    if not args.skip_install:
        install_missing()
    else:
        todo = missing(["torch", *read_requirements(REQUIREMENTS_FILE), *NO_DEPS])
        if todo:
            sys.exit(f"launch.py --skip-install: missing or wrong versions: {', '.join(todo)}")
    if args.install_only:
        return
    sys.path.insert(0, str(ROOT))
    from standalone.server import ServerConfig, serve
    from standalone.server.auth import parse_credentials

    try:
        credentials = parse_credentials(args.api_auth)
    except ValueError as exc:
        sys.exit(f"launch.py: {exc}")
    config = ServerConfig(models_dir=args.models_dir, ckpt=args.ckpt, controlnet_dirs=tuple(args.controlnet_dir),
                          api_auth=credentials, demo=args.demo)
    serve(config, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
