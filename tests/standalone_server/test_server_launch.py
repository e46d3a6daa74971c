"""launch.py: --help without installing anything, and what it would install in which order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import launch

ROOT = Path(__file__).resolve().parents[2]


def test_help_works_and_installs_nothing():
    result = subprocess.run([sys.executable, str(ROOT / "launch.py"), "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    for flag in ("--host", "--port", "--ckpt", "--models-dir", "--skip-install"):
        assert flag in result.stdout
    assert "pip" not in result.stdout and not result.stderr


def test_defaults():
    args = launch.parse_args([])
    assert (args.host, args.port, args.ckpt) == ("127.0.0.1", 7860, None)
    assert args.models_dir == ROOT / "models"


def test_requirements_file_is_read_without_comments_or_options():
    requirements = launch.read_requirements(launch.REQUIREMENTS_FILE)
    assert "fastapi==0.94.0" in requirements and "uvicorn" in requirements
    assert not any(r.startswith(("#", "-")) or r.split("=")[0] == "torch" for r in requirements)
    # The optional preprocessor packages too, so that no module answers 501 on a fresh machine.
    assert {"mediapipe==0.10.9", "protobuf==3.20.0", "onnxruntime==1.23.2"} <= set(requirements)


def test_satisfied_requirements_are_not_installed_again():
    version = launch.installed_version("pytest")
    assert launch.missing([f"pytest=={version}", "pytest>=1"]) == []
    assert launch.missing(["pytest<1", "surely-not-an-installed-package-xyz"]) == [
        "pytest<1", "surely-not-an-installed-package-xyz"]


@pytest.fixture
def fake_env(monkeypatch):
    """An environment with nothing installed; pip calls are recorded instead of run."""
    calls = []
    present: dict[str, str] = {}
    monkeypatch.setattr(launch, "installed_version", lambda name: present.get(name.lower().replace("_", "-")))

    def pip(args, constraints=None):
        calls.append((list(args), constraints))
        if args == [launch.TORCH]:
            present["torch"] = "2.13.0+cpu"  # what pip would install

    monkeypatch.setattr(launch, "pip", pip)
    monkeypatch.delenv("TORCH_INDEX_URL", raising=False)
    return calls, present


def test_torch_comes_first_pinned_then_the_rest_with_torch_held(fake_env):
    calls, _ = fake_env
    launch.install_missing()
    assert calls[0] == ([launch.TORCH], None)
    requirements, constraints = calls[1]
    assert constraints == "torch==2.13.0+cpu\n"
    assert "fastapi==0.94.0" in requirements and not any(r.startswith("torch") for r in requirements)
    assert calls[2] == (["--no-deps", *launch.NO_DEPS], None)


def test_an_installed_torch_is_kept(fake_env):
    calls, present = fake_env
    present["torch"] = "2.1.2+cu121"
    launch.install_missing()
    assert all(args != [launch.TORCH] for args, _ in calls)
    assert calls[0][1] == "torch==2.1.2+cu121\n"


def test_torch_is_asked_for_as_the_cpu_build_only():
    assert launch.TORCH == "torch==2.13.0+cpu"  # a local version label: no index can answer it with a CUDA build


def test_no_cpu_torch_stops_with_advice(fake_env, monkeypatch):
    def failing_pip(args, constraints=None):
        raise subprocess.CalledProcessError(1, "pip")

    monkeypatch.setattr(launch, "pip", failing_pip)
    with pytest.raises(SystemExit, match="TORCH_INDEX_URL"):
        launch.install_missing()
