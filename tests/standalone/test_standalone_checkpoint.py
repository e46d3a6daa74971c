"""Checkpoint recognition, the three networks built from a file's shapes, and the demo files themselves."""

from __future__ import annotations

import hashlib

import pytest
import torch

from lib_controlnet.errors import ModelFileError
from standalone import UnsupportedCheckpointError, detect_family, ensure_demo_models, read_checkpoint
from standalone.checkpoint import TEXT_PREFIX, UNET_PREFIX, VAE_PREFIX
from standalone.demo import DEMO_NOTICE, DEMO_UNET
from standalone.text_encoder import POSITION_IDS, map_text_weights, normalise_text_keys
from standalone.unet import V1_INFERENCE, build_unet, unet_config_from_shapes


def test_demo_checkpoint_loads_as_a_demo(sd_model, demo):
    ckpt = read_checkpoint(demo.checkpoint)
    assert ckpt.family == "sd1" and ckpt.unused_keys == []
    assert sd_model.is_demo and sd_model.notice == DEMO_NOTICE and "random" in DEMO_NOTICE
    assert sd_model.name == "demo-random-weights-sd15"
    assert len(sd_model.short_hash()) == 10


def test_demo_files_are_deterministic_and_have_no_zero_tensors(tmp_path, demo):
    again = ensure_demo_models(tmp_path)
    for ours, theirs in ((demo.checkpoint, again.checkpoint), (demo.controlnet, again.controlnet)):
        assert hashlib.sha256(ours.read_bytes()).digest() == hashlib.sha256(theirs.read_bytes()).digest()
    for path in (demo.checkpoint, demo.controlnet):
        from lib_controlnet.models.files import read_safetensors

        sd = read_safetensors(path)
        zero = [k for k, v in sd.items() if v.is_floating_point() and not v.any()]
        assert zero == [], f"{path.name}: all-zero tensors {zero[:5]}"
    cn_keys = read_safetensors(demo.controlnet)
    assert all(k.startswith("control_model.") for k in cn_keys) and "control_model.zero_convs.0.0.weight" in cn_keys


def test_unet_config_read_from_v1_shapes_is_v1_inference():
    with torch.device("meta"):
        unet = build_unet(V1_INFERENCE)
    shapes = {k: tuple(v.shape) for k, v in unet.state_dict().items()}
    config = unet_config_from_shapes(shapes)
    assert config.pop("use_linear_in_transformer") is False
    assert config == V1_INFERENCE
    assert sum(v.numel() for v in unet.state_dict().values()) == pytest.approx(859.52e6, rel=1e-3)


def test_demo_unet_has_every_key_of_the_real_layout(sd_model):
    with torch.device("meta"):
        real = build_unet(V1_INFERENCE)
    assert set(real.state_dict()) == set(sd_model.unet.state_dict())
    assert sd_model.unet.model_channels == DEMO_UNET["model_channels"]


def test_text_encoder_weights_are_consumed_exactly(demo, sd_model):
    ckpt = read_checkpoint(demo.checkpoint)
    model_keys = set(sd_model.prompts.model.state_dict())
    loaded, consumed = map_text_weights(ckpt.text_encoder, model_keys)
    assert set(loaded) == model_keys  # every weight the model has came from the file
    assert set(loaded) | consumed == set(normalise_text_keys(ckpt.text_encoder))  # and nothing was left over
    assert consumed == {POSITION_IDS}
    assert len(model_keys) == 2 + 16 * 12 + 2  # 2 embedding tables, 12 layers of 16 tensors, final norm
    for k in loaded:
        assert torch.equal(sd_model.prompts.model.state_dict()[k], ckpt.text_encoder[k].float())
    with pytest.raises(ModelFileError, match="unexpected"):
        map_text_weights({**ckpt.text_encoder, "text_model.extra.weight": torch.zeros(1)}, model_keys)
    old_style = {k.removeprefix("text_model."): v for k, v in ckpt.text_encoder.items()}
    assert set(map_text_weights(old_style, model_keys)[0]) == model_keys


def _shapes(demo) -> dict:
    return {k: tuple(v.shape) for k, v in read_checkpoint(demo.checkpoint).unet.items()}


def _layout(demo) -> dict:
    from lib_controlnet.models.files import read_safetensors

    return {k: tuple(v.shape) for k, v in read_safetensors(demo.checkpoint).items()}


@pytest.mark.parametrize(
    "change, message",
    [
        # an SDXL conditioner key makes it SDXL, which then lacks its two text encoders
        (lambda s: s.update({"conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": (768,)}),
         "no SDXL text encoder .'conditioner.embedders.1.model."),
        (lambda s: s.update({UNET_PREFIX + "label_emb.0.0.weight": (1280, 2816)}),
         "no SDXL text encoder .'conditioner.embedders.0.transformer."),
        (lambda s: s.update({"conditioner.embedders.0.model.ln_final.weight": (1280,)}), "SDXL refiner"),
        (lambda s: s.update({UNET_PREFIX + "input_blocks.0.0.weight": (32, 9, 3, 3)}), "inpainting"),
        (lambda s: [s.pop(k) for k in list(s) if k.startswith(VAE_PREFIX)], "no VAE"),
        (lambda s: [s.pop(k) for k in list(s) if k.startswith(TEXT_PREFIX)], "no SD1.x text encoder"),
    ],
)
def test_refused_checkpoints_say_what_they_are(demo, change, message):
    shapes = _layout(demo)
    assert detect_family(shapes) == "sd1"
    change(shapes)
    with pytest.raises(UnsupportedCheckpointError, match=message):
        detect_family(shapes)


def test_the_family_comes_from_the_text_encoder_keys(demo):
    shapes = _layout(demo)
    sd2 = {k: v for k, v in shapes.items() if not k.startswith(TEXT_PREFIX)}
    sd2["cond_stage_model.model.ln_final.weight"] = (1024,)
    assert detect_family(sd2) == "sd2"


def test_a_controlnet_file_is_not_a_checkpoint(demo):
    with pytest.raises(UnsupportedCheckpointError, match="ControlNet model"):
        read_checkpoint(demo.controlnet)


def test_vae_decode_and_encode_match_diffusers(sd_model):
    """An independent implementation on the same random weights: diffusers' AutoencoderKL."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    vae = sd_model.vae
    ch, mults = vae.config["ch"], list(vae.config["ch_mult"])
    config = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32,
                  block_out_channels=[ch * m for m in mults], sample_size=256,
                  down_block_types=["DownEncoderBlock2D"] * len(mults),
                  up_block_types=["UpDecoderBlock2D"] * len(mults))
    ldm = {"first_stage_model." + k: v for k, v in vae.state_dict().items()}
    theirs = AutoencoderKL(**config)
    missing, unexpected = theirs.load_state_dict(convert_ldm_vae_checkpoint(ldm, config), strict=False)
    assert not missing and not unexpected
    theirs.eval()
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 8, 8, generator=g)
    with torch.no_grad():
        expected = theirs.decode(latents / 0.18215).sample
        assert torch.allclose(vae.decode(latents), expected, atol=1e-4, rtol=1e-4)
        images = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
        mean = theirs.encode(images).latent_dist.mean
        assert torch.allclose(vae.encode(images), mean * 0.18215, atol=1e-4, rtol=1e-4)
