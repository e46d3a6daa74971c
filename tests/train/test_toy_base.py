"""The toy base model (lib_controlnet.train.toy): its file is SD1.x's layout at reduced widths and loads through the
standalone host's loader; its VAE and UNet trainers learn, are seeded, and the command line runs all stages.

Sizes are test-sized (a few scenes, a few steps); the real run's settings are the dataclass defaults."""

import hashlib
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lib_controlnet import load_control_model
from lib_controlnet.train.toy import base_model as bm
from lib_controlnet.train.toy.__main__ import main as toy_main
from lib_controlnet.train.toy.dataset import SceneSet
from lib_controlnet.train.toy.unet_training import UNetTrainer, UNetTraining, prompt_ids, toy_tokenizer
from lib_controlnet.train.toy.vae_training import VAETrainer, VAETraining, normalise_latents_
from standalone import GenerationRequest, Pipeline, load_sd_model
from standalone.checkpoint import TEXT_PREFIX, UNET_PREFIX, VAE_PREFIX
from standalone.embedded import TOY_NOTICE, embedded_paths
from standalone.text_encoder import VIT_L14_TEXT
from standalone.unet import V1_INFERENCE, build_unet, unet_config_from_shapes
from standalone.vae import V1_DDCONFIG, LatentVAE


@pytest.fixture
def one_thread():
    """Bit-for-bit comparisons of training runs need one torch thread (a CPU kernel's parallel reduction order
    varies between runs with two)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def scenes():
    return SceneSet.make(16, bm.RESOLUTION, seed=0)


def sd1_key_shapes() -> dict[str, tuple[int, ...]]:
    """Every key and shape of a published-size SD1.x checkpoint (v1-inference.yaml), built on the meta device."""
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        parts = {UNET_PREFIX: build_unet(V1_INFERENCE), VAE_PREFIX: LatentVAE(V1_DDCONFIG, 4),
                 TEXT_PREFIX: CLIPTextModel(CLIPTextConfig(**VIT_L14_TEXT))}
    shapes = {p + k: tuple(v.shape) for p, m in parts.items() for k, v in m.state_dict().items()}
    shapes[TEXT_PREFIX + "text_model.embeddings.position_ids"] = (1, 77)  # a buffer published files carry
    return shapes


def toy_state_dict():
    return bm.checkpoint_state_dict(bm.build_unet_part(), bm.build_vae_part(), bm.build_text_part(),
                                    keep_tokens=[320, 3140, 49406, 49407])


def test_the_layout_is_sd1_at_reduced_widths_and_loads_in_the_host(tmp_path):
    sd = toy_state_dict()
    full = sd1_key_shapes()
    # every key is one of SD1.x's, with a tensor of the same rank; the text model has ViT-L's first 4 layers;
    # the only other keys SD1.x has are 1x1 shortcut convs, which ldm adds where a block changes its width
    # (the toy's flatter width profile does not change it at UNet level 2 / VAE level 1)
    text_layers = [f"{TEXT_PREFIX}text_model.encoder.layers.{i}." for i in range(bm.TOY_TEXT["num_hidden_layers"])]
    deeper = {k for k in full if k.startswith(f"{TEXT_PREFIX}text_model.encoder.layers.")
              and not k.startswith(tuple(text_layers))}
    assert set(sd) <= set(full)
    shortcuts = {k for k in set(full) - deeper - set(sd) if ".skip_connection." in k or ".nin_shortcut." in k}
    assert set(full) - deeper - set(sd) == shortcuts
    assert sorted({k.rsplit(".", 2)[0] for k in shortcuts}) == [
        "first_stage_model.decoder.up.0.block.0", "first_stage_model.encoder.down.1.block.0",
        "model.diffusion_model.input_blocks.7.0"]
    assert all(len(sd[k].shape) == len(full[k]) for k in full if k in sd)
    assert sd[UNET_PREFIX + "input_blocks.0.0.weight"].shape == (32, 4, 3, 3)  # SD1.x: (320, 4, 3, 3)
    assert sd[TEXT_PREFIX + "text_model.embeddings.token_embedding.weight"].shape == (49408, 64)  # CLIP's table
    assert torch.equal(sd[TEXT_PREFIX + "text_model.embeddings.position_ids"], torch.arange(77)[None])
    # only the kept token rows are non-zero
    table = sd[TEXT_PREFIX + "text_model.embeddings.token_embedding.weight"]
    assert table.any(dim=1).nonzero().flatten().tolist() == [320, 3140, 49406, 49407]

    path = bm.save_checkpoint(tmp_path / "toy.safetensors", sd, {"unet_steps": 0})
    model = load_sd_model(path)
    assert (model.family, model.prediction_type, model.default_size) == ("sd1", "epsilon", 64)
    assert model.notice == TOY_NOTICE
    shapes = {k[len(UNET_PREFIX):]: tuple(v.shape) for k, v in sd.items() if k.startswith(UNET_PREFIX)}
    assert unet_config_from_shapes(shapes) == {**bm.TOY_UNET, "use_linear_in_transformer": False}
    assert model.vae.config["ch_mult"] == bm.TOY_VAE["ch_mult"] and model.vae.config["ch"] == bm.TOY_VAE["ch"]
    assert model.prompts.model.config.num_hidden_layers == 4
    # the host's parts hold the file's weights (fp16 in the file)
    assert torch.equal(model.unet.state_dict()["out.2.weight"], sd[UNET_PREFIX + "out.2.weight"].half().float())
    result = Pipeline(model).generate(GenerationRequest(prompt="a red circle", width=64, height=64, steps=2, seed=1))
    assert result.images[0].size == (64, 64)
    # the same weights give the same bytes (a single metadata key: its order cannot vary)
    again = bm.save_checkpoint(tmp_path / "again.safetensors", sd, {"unet_steps": 0})
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(again.read_bytes()).digest()


def test_parts_are_seeded():
    a, b = bm.build_unet_part(), bm.build_unet_part()
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    table = "text_model.embeddings.token_embedding.weight"
    assert not torch.equal(bm.build_text_part(seed=5).state_dict()[table], bm.build_text_part().state_dict()[table])


def test_captions_are_one_chunk_of_the_hosts_tokens(scenes):
    tokenizer = toy_tokenizer()
    ids = prompt_ids(scenes.captions[:2] + [""], tokenizer)
    assert ids.shape == (3, 77)
    assert ids[2].tolist() == [49406] + [49407] * 76
    kept = bm.caption_token_ids(tokenizer, scenes.captions)
    assert set(ids[:2].flatten().tolist()) <= set(kept)
    assert len(kept) < 60  # the grammar's few words: colours, shapes, positions, "a", "on", "background"...


@torch.no_grad()
def held_out_loss(trainer) -> float:
    """The mean loss of four batches of steps the short runs below never train on."""
    return float(np.mean([float(trainer.micro_loss(1000 + k, 0)) for k in range(4)]))


def test_vae_training_reduces_its_loss_and_is_seeded(scenes, tmp_path, one_thread):
    def run(folder, steps=4):
        trainer = VAETrainer(VAETraining(work_dir=folder, steps=steps, batch_size=2, crop=16, lr=2e-3,
                                         warmup_steps=0, save_every=100), scenes=scenes)
        before = held_out_loss(trainer)
        trainer.loop.run(trainer.micro_loss)
        after = held_out_loss(trainer)
        return trainer, before, after

    first, before, after = run(tmp_path / "a")
    assert after < before
    second, _, _ = run(tmp_path / "b")
    assert all(torch.equal(v, second.vae.state_dict()[k]) for k, v in first.vae.state_dict().items())


def test_latent_normalisation_keeps_reconstructions_and_gives_unit_spread(scenes):
    vae = bm.build_vae_part().eval()
    x = scenes.pixels(range(4))
    with torch.no_grad():
        before = vae.decode(vae.encode(x))
        normalise_latents_(vae, scenes)
        after = vae.decode(vae.encode(x))
        z = vae.encode(scenes.pixels(range(len(scenes))))
    assert torch.allclose(before, after, atol=1e-4)
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-4)
    assert torch.allclose(z.std(dim=(0, 2, 3)), torch.ones(4), atol=1e-3)


def test_unet_training_reduces_its_loss_and_is_seeded(scenes, tmp_path, one_thread):
    vae = bm.build_vae_part().eval()

    def run(folder, steps=6):
        trainer = UNetTrainer(UNetTraining(work_dir=folder, steps=steps, batch_size=8, lr=2e-3, warmup_steps=0,
                                           save_every=100), scenes=scenes, vae=vae)
        trainer.cache_latents()
        before = held_out_loss(trainer)
        trainer.loop.run(trainer.micro_loss, on_step=trainer.update_ema)
        after = held_out_loss(trainer)
        return trainer, before, after

    first, before, after = run(tmp_path / "a")
    assert after < before
    second, _, _ = run(tmp_path / "b")
    for k, v in first.loop.params.items():
        assert torch.equal(v, second.loop.params[k]), k
        assert torch.equal(first.ema[k], second.ema[k]), k
    # the text model learns through the UNet: its caption rows moved
    table = first.loop.params["text.text_model.embeddings.token_embedding.weight"]
    assert not torch.equal(table, bm.build_text_part().state_dict()["text_model.embeddings.token_embedding.weight"])


def test_noisy_steps_weigh_more_up_to_the_cap_and_the_noise_offset_is_shared_per_channel(scenes, tmp_path):
    trainer = UNetTrainer(UNetTraining(work_dir=tmp_path, steps=1, batch_size=4), scenes=scenes,
                          vae=bm.build_vae_part().eval())
    t = torch.tensor([0, 200, 500, 700, 999])
    w = trainer.noise_weights(t)
    a = trainer.schedule.alphas_cumprod[t]
    assert w[0] == 1.0 and w[1] == 1.0  # SNR > 1: the plain eps loss
    assert torch.allclose(w[2], ((1 - a[2]) / a[2]).float())  # 1/SNR between
    assert w[3] == w[4] == 5.0  # the cap
    assert torch.all(w[1:] >= w[:-1])
    # the offset: each image's channel means spread by it on top of randn's own 1/8 (8x8 positions)
    means = {}
    for offset in (0.0, 0.5):
        trainer.config.offset_noise = offset
        means[offset] = trainer.noise((256, 4, 8, 8), torch.Generator().manual_seed(0)).mean(dim=(2, 3))
    assert abs(float(means[0.0].std()) - 1 / 8) < 0.02
    assert abs(float(means[0.5].std()) - (0.5**2 + 1 / 64) ** 0.5) < 0.05


def test_the_command_line_runs_every_stage_into_a_loadable_checkpoint(tmp_path):
    work = str(tmp_path / "toy")
    common = ["--work-dir", work, "--scenes", "8", "--threads", "1"]
    assert toy_main(["vae", *common, "--steps", "2", "--batch-size", "2", "--crop", "16"]) == 0
    assert toy_main(["unet", *common, "--steps", "2", "--batch-size", "4"]) == 0
    assert toy_main(["unet", *common, "--steps", "3", "--batch-size", "4"]) == 2  # needs --resume
    assert toy_main(["unet", *common, "--steps", "3", "--batch-size", "4", "--resume"]) == 0
    assert toy_main(["base", "--work-dir", work]) == 0
    path = tmp_path / "toy" / "toy-shapes-sd15.safetensors"
    model = load_sd_model(path)
    assert model.notice == TOY_NOTICE
    parts = load_file(str(tmp_path / "toy" / "unet" / "parts.safetensors"))
    assert torch.equal(model.vae.state_dict()["quant_conv.bias"], parts[VAE_PREFIX + "quant_conv.bias"].half().float())
    # the canny ControlNet on it, its learning curve and the copy into an embedded folder laid out as the host's
    assert toy_main(["controlnet", *common, "--steps", "2", "--batch-size", "2", "--save-every", "1"]) == 0
    assert toy_main(["curve", "--work-dir", work, "--count", "1", "--sample-steps", "2"]) == 0
    curve = json.loads((tmp_path / "toy" / "curve.json").read_text())
    assert [p["step"] for p in curve] == [0, 1, 2] and all(0 <= p["edge_f1"] <= 1 for p in curve)
    assert (tmp_path / "toy" / "curve.png").is_file() and (tmp_path / "toy" / "canny.png").is_file()
    assert toy_main(["embed", "--work-dir", work, "--embedded-dir", str(tmp_path / "embedded")]) == 0
    embedded = embedded_paths(tmp_path / "embedded")
    assert embedded.exist() and embedded.checkpoint.read_bytes() == path.read_bytes()
    assert load_control_model(embedded.controlnet).family == "sd1"


def test_prompt_following_reads_a_rendered_scene_as_its_caption_and_a_blank_one_as_wrong():
    from lib_controlnet.train.toy.prompt_following import prompt_following, summary
    from lib_controlnet.train.toy.scenes import COLOURS, render

    scenes = SceneSet.make(24, bm.RESOLUTION, seed=3)
    rendered = [prompt_following(image, scene) for image, scene in zip(scenes.images, scenes.scenes)]
    assert summary(rendered) == {"background": 1.0, "found": 1.0, "placed": 1.0, "all_right": 1.0}
    scene = scenes.scenes[0]
    blank = np.full_like(scenes.images[0], COLOURS[scene.background])
    result = prompt_following(blank, scene)
    assert result.background and result.found == 0 and not result.all_right
    # the right colours in the wrong places: every shape moved to the mirrored position
    from dataclasses import replace

    mirrored = replace(scene, shapes=tuple(replace(s, cx=1 - s.cx, cy=1 - s.cy) for s in scene.shapes))
    moved = prompt_following(render(mirrored, bm.RESOLUTION, bm.RESOLUTION), scene)
    centred = sum(s.position == "in the center" for s in scene.shapes)
    assert moved.found == len(scene.shapes) and moved.placed == centred


def test_canny_pairs_are_the_tutorial_layout_of_other_scenes(tmp_path):
    from lib_controlnet.train.edges import canny_map
    from lib_controlnet.train.pairs import PairDataset
    from lib_controlnet.train.toy.canny_pairs import PAIRS_SEED, write_canny_pairs

    folder = write_canny_pairs(tmp_path / "pairs", 3)
    data = PairDataset(folder, bm.RESOLUTION)
    scenes = SceneSet.make(3, bm.RESOLUTION, seed=PAIRS_SEED)
    control, target, prompt = data[2]
    assert prompt == scenes.captions[2]
    assert torch.equal(control, torch.from_numpy(canny_map(scenes.images[2])).permute(2, 0, 1).float() / 255)
    assert torch.equal(((target + 1) * 127.5).round().byte(), torch.from_numpy(scenes.images[2]).permute(2, 0, 1))
    assert scenes.captions[0] != SceneSet.make(1, bm.RESOLUTION, seed=0).captions[0]  # not the base's scenes
