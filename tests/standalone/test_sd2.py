"""SD2.x checkpoints: family and prediction type, the OpenCLIP ViT-H tower against transformers, the UNet against
diffusers, v-prediction sampling against a hand-written k-diffusion Euler loop, and an SD2 ControlNet."""

from __future__ import annotations

import pytest
import torch

from lib_controlnet import BoundUnit, IncompatibleModelError, load_control_model
from lib_controlnet.models.files import read_safetensors
from standalone import Pipeline, load_sd_model, read_checkpoint
from standalone.checkpoint import SD2_TEXT_PREFIX, V_PREDICTION
from tests.standalone.helpers import small
from tests.standalone.sd2_models import SD2_TEXT, SD2_UNET, save_sd2_checkpoint
from tests.standalone.test_standalone_sampling import uniform_sigmas
from tests.tiny_models import controlnet_state_dict_from_unet, save_state_dict

pytest.importorskip("diffusers")

DIFFUSERS_SD2 = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, norm_num_groups=32,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    block_out_channels=(64, 64, 128, 128), attention_head_dim=(1, 1, 2, 2),  # heads: channels / 64
    cross_attention_dim=64, use_linear_projection=True,
)


def rel_err(a, b) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


@pytest.fixture(scope="module")
def sd2_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("sd2")
    v = save_sd2_checkpoint(d / "tiny-sd2-768-v.safetensors", v_prediction=True)
    eps = save_sd2_checkpoint(d / "tiny-sd2-512-base.safetensors", v_prediction=False)
    return v, eps


@pytest.fixture(scope="module")
def sd2_v(sd2_files, models_dir):
    return load_sd_model(sd2_files[0], models_dir=models_dir)


@pytest.fixture(scope="module")
def sd2_controlnet(sd2_v, tmp_path_factory):
    path = tmp_path_factory.mktemp("sd2cn") / "tiny-controlnet-sd21.safetensors"
    return load_control_model(save_state_dict(controlnet_state_dict_from_unet(sd2_v.unet, seed=3), path))


def test_family_prediction_type_and_size(sd2_files, models_dir, sd2_v):
    v, eps = sd2_files
    assert read_checkpoint(v).family == "sd2" and read_checkpoint(v).prediction_type == V_PREDICTION
    # no yaml, no metadata: A1111's test run of the UNet decides (a random UNet is not a v model)
    assert read_checkpoint(eps).prediction_type is None
    plain = load_sd_model(eps, models_dir=models_dir)
    assert plain.prediction_type == "epsilon" and plain.default_size == 512
    assert sd2_v.prediction_type == V_PREDICTION and sd2_v.default_size == 768
    assert sd2_v.unet.num_head_channels == 64 and sd2_v.vae.scale_factor == 0.18215


def test_open_clip_h_tower_matches_transformers_with_diffusers_conversion(sd2_files, sd2_v):
    """A1111's SD2 rule: the penultimate layer through the final norm, ids after the end token set to 0."""
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel

    checkpoint = {k: v.float() for k, v in read_safetensors(sd2_files[0]).items()}
    # diffusers' SD2 text encoder is the ViT-H tower without its last layer (its conversion drops layer 23),
    # so its last_hidden_state is SD2's penultimate layer through the final norm
    theirs = CLIPTextModel(CLIPTextConfig(**dict(SD2_TEXT, num_hidden_layers=23)))
    weights = convert_open_clip_checkpoint(theirs, checkpoint, prefix=SD2_TEXT_PREFIX)
    weights.pop("text_projection.weight", None)
    missing, unexpected = theirs.load_state_dict(weights, strict=False)
    assert not unexpected and set(missing) <= {"text_model.embeddings.position_ids"}
    theirs.eval()
    prompts = sd2_v.prompts
    ids = torch.tensor([prompts.chunks("a photo of a cat")[0].ids])
    assert ids[0, 6].item() == 49407 and ids[0, 7].item() == 49407  # our chunk, end-padded like A1111's
    ids[0, 7:] = 0
    with torch.no_grad():
        expected = theirs(input_ids=ids).last_hidden_state
    got = prompts.encode(["a photo of a cat"])
    assert got.shape == (1, 77, 64) and rel_err(got, expected) <= 1e-5
    assert torch.equal(prompts.encode(["a photo of a cat"], clip_skip=2), got)  # CLIP skip does not apply


def test_unet_matches_diffusers(sd2_files, sd2_v):
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    checkpoint = {k: v.float() for k, v in read_safetensors(sd2_files[0]).items()}
    theirs = UNet2DConditionModel(**DIFFUSERS_SD2)
    theirs.load_state_dict(convert_ldm_unet_checkpoint(checkpoint, dict(DIFFUSERS_SD2)), strict=True)
    g = torch.Generator().manual_seed(4)
    x, context = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 77, 64, generator=g)
    t = torch.tensor([999.0, 10.0])
    with torch.no_grad():
        assert rel_err(sd2_v.unet(x, t, context=context), theirs.eval()(x, t, context).sample) <= 1e-5


def test_v_prediction_sampling_equals_hand_written_k_diffusion_euler(sd2_files, sd2_v):
    """k-diffusion's CompVisVDenoiser + Euler written out: denoised = x·c_skip + v·c_out with c_skip =
    1/(σ²+1), c_out = -σ/√(σ²+1), v = UNet(x/√(σ²+1), t) - over diffusers' UNet."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    checkpoint = {k: v.float() for k, v in read_safetensors(sd2_files[0]).items()}
    theirs = UNet2DConditionModel(**DIFFUSERS_SD2)
    theirs.load_state_dict(convert_ldm_unet_checkpoint(checkpoint, dict(DIFFUSERS_SD2)), strict=True)
    theirs.eval()
    request = small(steps=4, seed=31)
    ours = Pipeline(sd2_v).generate(request).latents.double()
    context = torch.cat([sd2_v.prompts.encode([request.prompt]), sd2_v.prompts.encode([request.negative_prompt])])
    t, sigmas = uniform_sigmas(4)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(31)).double() * sigmas[0]
    with torch.no_grad():
        for i in range(4):
            s = sigmas[i]
            v = theirs((x / (s**2 + 1) ** 0.5).float().expand(2, -1, -1, -1), torch.full((2,), float(t[i])),
                       context).sample.double()
            v = v[1:] + request.cfg_scale * (v[:1] - v[1:])
            denoised = x / (s**2 + 1) - v * s / (s**2 + 1) ** 0.5
            x = x + (x - denoised) / s * (sigmas[i + 1] - s)
    assert torch.allclose(ours, x, atol=1e-3, rtol=1e-4), (ours - x).abs().max()
    # read as eps instead, the same weights give another image: the prediction type is really used
    sd2_v.prediction_type = "epsilon"
    try:
        assert not torch.allclose(Pipeline(sd2_v).generate(request).latents.double(), x, atol=1e-2)
    finally:
        sd2_v.prediction_type = V_PREDICTION


def test_an_sd2_controlnet_on_an_sd2_checkpoint(sd2_v, sd2_controlnet, controlnet, hint):
    assert sd2_controlnet.family == "sd2" and sd2_controlnet.num_outputs == 13
    pipeline = Pipeline(sd2_v)
    plain = pipeline.generate(small(steps=3))
    zero = pipeline.generate(small(steps=3, units=[BoundUnit(sd2_controlnet, hint, weight=0.0)]))
    controlled = pipeline.generate(small(steps=3, units=[BoundUnit(sd2_controlnet, hint)]))
    assert torch.equal(plain.latents, zero.latents)
    assert (controlled.latents - plain.latents).abs().mean() > 1e-3
    odd = pipeline.generate(small(steps=2, width=72, height=88, units=[BoundUnit(sd2_controlnet, hint)]))
    assert odd.images[0].size == (72, 88)
    with pytest.raises(IncompatibleModelError) as info:
        pipeline.generate(small(steps=1, units=[BoundUnit(controlnet, hint, index=1)]))  # the SD1.x demo ControlNet
    assert info.value.unit == 1 and info.value.field == "model"


def test_sd2_unet_config_read_from_shapes_is_v2_inference():
    from standalone.unet import build_unet, unet_config_from_shapes

    v2 = dict(SD2_UNET, model_channels=320, channel_mult=[1, 2, 4, 4], context_dim=1024)
    with torch.device("meta"):
        unet = build_unet(v2)
    shapes = {k: tuple(v.shape) for k, v in unet.state_dict().items()}
    config = unet_config_from_shapes(shapes, "sd2")
    assert config == v2
    assert sum(v.numel() for v in unet.state_dict().values()) == pytest.approx(865.91e6, rel=1e-3)
