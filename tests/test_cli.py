"""`python -m lib_controlnet`: describes usable files and explains unusable ones."""

from lib_controlnet.__main__ import main


def test_demo_and_an_unusable_file(tmp_path, capsys):
    (tmp_path / "notes.safetensors").write_bytes(b"garbage")
    assert main([str(tmp_path), "--demo"]) == 0
    out = capsys.readouterr().out
    assert "random weights, not a real model" in out
    assert "demo_random_weights_controlnet.safetensors: controlnet, sd1, format ldm-controlnet, 13 residuals" in out
    assert "notes.safetensors: cannot be used: " in out


def test_files_that_are_no_control_model_share_one_line(tmp_path, capsys):
    # what launch.py leaves in models/: the demo SD checkpoint beside the demo ControlNet; and a VAE
    import torch
    from safetensors.torch import save_file

    checkpoint = tmp_path / "demo" / "Stable-diffusion" / "demo-random-weights-sd15.safetensors"
    checkpoint.parent.mkdir(parents=True)
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3),
               "first_stage_model.decoder.conv_in.weight": torch.zeros(8, 4, 3, 3)}, str(checkpoint))
    save_file({"decoder.conv_in.weight": torch.zeros(8, 4, 3, 3)}, str(tmp_path / "vae-ft-mse.safetensors"))
    assert main([str(tmp_path), "--demo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "not a recognised control model" not in "\n".join(lines)
    skipped = [line for line in lines if line.startswith("not control models")]
    assert skipped == ["not control models (SD checkpoints, VAEs, annotator weights...), skipped: "
                       "demo-random-weights-sd15.safetensors, vae-ft-mse.safetensors"]
    assert any(line.startswith("demo_random_weights_controlnet.safetensors: controlnet, sd1") for line in lines)
