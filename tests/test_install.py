"""install.py installs only what is missing and can never change an installed package's version."""

import subprocess
from importlib import metadata

import install


def test_only_missing_requirements_are_planned():
    present = {"mediapipe": "0.10.9", "numpy": "1.26.4"}
    assert install.missing((("mediapipe==0.10.9", "x"), ("Some_Pkg>=1", "y")), present) == [("Some_Pkg>=1", "y")]


def test_onnxruntime_is_planned_unless_some_build_of_it_is_there():
    assert [req for req, _ in install.missing(present={"mediapipe": "0.10.9"})] == ["onnxruntime==1.23.2"]
    for build in ("onnxruntime", "onnxruntime-gpu", "onnxruntime_directml"):
        assert install.missing(present={"mediapipe": "0.10.9", install._canonical(build): "1.17.0"}) == []


def test_constraints_pin_every_installed_distribution():
    text = install.constraints(install.installed())
    assert f"numpy=={metadata.version('numpy')}\n" in text
    assert f"torch=={metadata.version('torch')}\n" in text


def test_pip_refuses_a_requirement_that_would_change_a_pinned_package():
    """A requirement that needs another numpy must fail, not downgrade the WebUI's numpy (pip --dry-run)."""
    before = metadata.version("numpy")

    def dry_run(cmd, check):
        return subprocess.run([*cmd[:4], "--dry-run", *cmd[4:]], check=check, capture_output=True, text=True)

    failed = install.install((("numpy<1.26", "a test"),), run=dry_run)
    assert failed == []  # numpy is installed already: nothing to do, nothing run
    failed = install.install((("definitely-not-installed-pkg-xyz==1.0", "a test"),), run=dry_run)
    assert failed == ["definitely-not-installed-pkg-xyz==1.0"]
    cmd = install.pip_command("numpy<1.26", "/tmp/c.txt")
    assert cmd[-3:] == ["-c", "/tmp/c.txt", "numpy<1.26"]
    assert metadata.version("numpy") == before


def test_constraints_make_pip_refuse_a_downgrade(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text(install.constraints(install.installed()))
    result = subprocess.run([*install.pip_command("numpy<1.26", str(path))[:4], "--dry-run",
                             *install.pip_command("numpy<1.26", str(path))[4:]], capture_output=True, text=True)
    assert result.returncode != 0
    assert "numpy" in (result.stdout + result.stderr)
