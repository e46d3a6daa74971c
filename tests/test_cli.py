"""`python -m lib_controlnet`: describes usable files and explains unusable ones."""

from lib_controlnet.__main__ import main


def test_demo_and_an_unusable_file(tmp_path, capsys):
    (tmp_path / "notes.safetensors").write_bytes(b"garbage")
    assert main([str(tmp_path), "--demo"]) == 0
    out = capsys.readouterr().out
    assert "random weights, not a real model" in out
    assert "demo_random_weights_controlnet.safetensors: controlnet, sd1, format ldm-controlnet, 13 residuals" in out
    assert "notes.safetensors: cannot be used: " in out
