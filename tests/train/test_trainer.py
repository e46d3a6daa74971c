"""`python -m lib_controlnet.train` in a test-sized run: the random-weight demo SD1.x checkpoint as the base
(64x64, a ~1 M-parameter UNet), a handful of toy canny pairs, a few hundred steps of batch 1."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from lib_controlnet import BoundUnit, InputError, load_control_model
from lib_controlnet.train import ControlNetTrainer, ControlNetTraining
from lib_controlnet.train.__main__ import main as train_main
from lib_controlnet.train.edges import canny_map
from lib_controlnet.train.pairs import PairDataset, write_index
from lib_controlnet.train.toy.scenes import render, sample_scene
from standalone import GenerationRequest, Pipeline, ensure_demo_models, load_sd_model

SIZE = 64
HINT = (8, 8, 16, 16, 16, 16, 32)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return ensure_demo_models(tmp_path_factory.mktemp("base-models")).checkpoint


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    (folder / "source").mkdir()
    (folder / "target").mkdir()
    rng = np.random.default_rng(0)
    items = []
    for i in range(4):
        scene = sample_scene(rng)
        image = render(scene, SIZE, SIZE)
        Image.fromarray(canny_map(image)).save(folder / "source" / f"{i}.png")
        Image.fromarray(image).save(folder / "target" / f"{i}.png")
        items.append((f"source/{i}.png", f"target/{i}.png", scene.caption))
    write_index(folder, items)
    return folder


def config(base, pairs, tmp_path, **overrides):
    values = dict(data=pairs, base=base, output=tmp_path / "trained.safetensors", resolution=SIZE, batch_size=1,
                  lr=1e-3, steps=200, save_every=100, sample_every=0, hint_widths=HINT, cache_latents=True,
                  precision="fp32", device="cpu")
    values.update(overrides)
    return ControlNetTraining(**values)


def eval_loss(trainer, batches=8):
    """The training objective on fixed draws (steps 10_000+ are never trained on)."""
    trainer.net.eval()
    with torch.no_grad():
        loss = float(np.mean([trainer.micro_loss(10_000 + k, 0).item() for k in range(batches)]))
    trainer.net.train()
    return loss


def tensors(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_a_short_run_trains_only_the_controlnet_and_writes_a_loadable_file(base, pairs, tmp_path):
    trainer = ControlNetTrainer(config(base, pairs, tmp_path))
    trainer.cache_latents()
    frozen = [tensors(m) for m in (trainer.base.unet, trainer.base.vae, trainer.base.prompts.model)]
    before = eval_loss(trainer)
    out = trainer.train()
    after = eval_loss(trainer)
    # the base is exactly as loaded: no parameter or buffer of UNet, VAE or text encoder changed
    for module, saved in zip((trainer.base.unet, trainer.base.vae, trainer.base.prompts.model), frozen):
        assert all(torch.equal(v, saved[k]) for k, v in module.state_dict().items())
    assert after < before  # it learned something about its pairs
    # prompts longer than a 75-token chunk: the batch's others get empty chunks, as the host pads them
    long_and_short = trainer.encode_prompts(["word " * 100, "a circle"])
    assert long_and_short.shape[:2] == (2, 154)
    assert torch.equal(long_and_short[1, 77:], trainer.base.prompts.encode([""])[0])
    # the output is an original-layout ControlNet that both hosts load
    model = load_control_model(out)
    assert (model.format, model.family, model.num_outputs) == ("ldm-controlnet", "sd1", 13)
    assert all(k.startswith("control_model.") for k in load_file(str(out)))
    assert json.loads((tmp_path / "trained-training" / "state" / "progress.json").read_text())["step"] == 200
    # and it changes a generation (an untrained one, all zero convs, would not)
    sd = load_sd_model(base)
    control = PairDataset(pairs, SIZE)[0][0][None]
    request = dict(prompt="a red circle", width=SIZE, height=SIZE, steps=4, seed=3)
    plain = np.asarray(Pipeline(sd).generate(GenerationRequest(**request)).images[0], dtype=np.int16)
    controlled = np.asarray(Pipeline(sd).generate(GenerationRequest(**request, units=[BoundUnit(model, control)]))
                            .images[0], dtype=np.int16)
    assert np.abs(plain - controlled).max() > 8


@pytest.fixture
def one_thread():
    """Bit-for-bit comparisons of training runs need one torch thread: with two, a CPU kernel's parallel
    reduction order varies from run to run (two identical runs in one process differed by ~1e-5 here), so
    the test passed or failed by what ran before it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_resume_continues_exactly_where_it_stopped(base, pairs, tmp_path, one_thread):
    straight = ControlNetTrainer(config(base, pairs, tmp_path / "a", steps=6, save_every=3))
    straight.train()
    args = [str(pairs), "--base", str(base), "--resolution", str(SIZE), "--batch-size", "1", "--lr", "1e-3",
            "--save-every", "3", "--sample-every", "3", "--sample-count", "1", "--sample-steps", "2",
            "--hint-widths", *map(str, HINT), "--device", "cpu", "--cache-latents",
            "--output", str(tmp_path / "b" / "cn.safetensors")]
    assert train_main([*args, "--steps", "3"]) == 0
    assert train_main([*args, "--steps", "6"]) == 2  # a second run into the same work folder needs --resume
    assert train_main([*args, "--steps", "6", "--resume"]) == 0
    resumed = load_file(str(tmp_path / "b" / "cn-training" / "state" / "weights.safetensors"))
    ours = load_file(str(tmp_path / "a" / "trained-training" / "state" / "weights.safetensors"))
    assert resumed.keys() == ours.keys() and all(torch.equal(resumed[k], ours[k]) for k in ours)
    samples = sorted((tmp_path / "b" / "cn-training" / "samples").glob("*.png"))
    assert [p.name for p in samples] == ["step_000003.png", "step_000006.png"]
    assert Image.open(samples[0]).size == (3 * SIZE, SIZE)  # control | generated | target


def test_bad_data_folders_say_what_is_wrong(tmp_path):
    with pytest.raises(InputError, match="has no prompt.json"):
        PairDataset(tmp_path, 64)
    (tmp_path / "prompt.json").write_text('{"source": "../x.png", "target": "t.png", "prompt": "p"}\n')
    with pytest.raises(InputError, match="line 1: source '../x.png' is not a path inside"):
        PairDataset(tmp_path, 64)
    (tmp_path / "prompt.json").write_text('{"source": "s.png"}\n')
    with pytest.raises(InputError, match="line 1 lacks target, prompt"):
        PairDataset(tmp_path, 64)
