"""The SDXL demo checkpoint and ControlNet against implementations nobody here wrote, on the same weights.

diffusers' single-file conversion (what it does with the original sgm layout) maps both demo files into
diffusers' `UNet2DConditionModel` / `ControlNetModel` and transformers' `CLIPTextModel` /
`CLIPTextModelWithProjection`; each must load strictly (so every key of ours is where diffusers expects the
published one) and compute what our modules compute, in float32, to <= 1e-5 relative.
"""

from __future__ import annotations

import pytest
import torch

from lib_controlnet import BoundUnit, CallInfo, ControlHook
from lib_controlnet.models.files import read_safetensors
from standalone.checkpoint import SDXL_CLIP_G_PREFIX, SDXL_CLIP_L_PREFIX
from standalone.demo_sdxl import DEMO_CLIP_G, DEMO_CLIP_L, DEMO_SDXL_UNET
from standalone.sdxl_conditioning import sdxl_vector

pytest.importorskip("diffusers")

UNET_CONFIG = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, norm_num_groups=32,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(32, 64, 128), transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(1, 1, 2),  # diffusers' legacy name for the head count: channels / 64, as SDXL's (5, 10, 20)
    cross_attention_dim=DEMO_SDXL_UNET.context_dim, use_linear_projection=True,
    addition_embed_type="text_time", addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=DEMO_SDXL_UNET.adm_in_channels,
)
CONTROLNET_CONFIG = {k: v for k, v in UNET_CONFIG.items() if k not in ("sample_size", "out_channels", "up_block_types")}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


@pytest.fixture(scope="module")
def checkpoint(sdxl_demo):
    return {k: v.float() if v.is_floating_point() else v for k, v in read_safetensors(sdxl_demo.checkpoint).items()}


@pytest.fixture(scope="module")
def diffusers_unet(checkpoint):
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    unet = UNet2DConditionModel(**UNET_CONFIG)
    unet.load_state_dict(convert_ldm_unet_checkpoint(checkpoint, dict(UNET_CONFIG)), strict=True)
    return unet.eval()


@pytest.fixture(scope="module")
def diffusers_controlnet(sdxl_demo):
    from diffusers import ControlNetModel
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING, convert_controlnet_checkpoint

    sd = {k: v.float() for k, v in read_safetensors(sdxl_demo.controlnet).items()}
    converted = convert_controlnet_checkpoint(sd, dict(CONTROLNET_CONFIG))
    # diffusers' ControlNet converter leaves out label_emb; its UNet table names it (as SDXL ControlNets share it)
    for new, old in DIFFUSERS_TO_LDM_MAPPING["unet"]["addition_embed_type"].items():
        converted[new] = sd["control_model." + old]
    net = ControlNetModel(**CONTROLNET_CONFIG)
    net.load_state_dict(converted, strict=True)
    return net.eval()


def unet_inputs(batch: int = 2, latent: tuple[int, int] = (8, 8), seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, *latent, generator=g)
    t = torch.tensor([999.0, 261.5][:batch])
    context = torch.randn(batch, 77, DEMO_SDXL_UNET.context_dim, generator=g)
    pooled = torch.randn(batch, DEMO_CLIP_G["projection_dim"], generator=g)
    h, w = latent[0] * 8, latent[1] * 8
    time_ids = torch.tensor([[h, w, 0, 0, h, w]] * batch, dtype=torch.float32)
    y = sdxl_vector(pooled, DEMO_SDXL_UNET.adm_in_channels, original=(h, w), target=(h, w))
    return x, t, context, pooled, time_ids, y


def test_diffusers_reads_the_demo_as_sdxl_base(checkpoint):
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    assert infer_diffusers_model_type(checkpoint) == "xl_base"


def test_the_full_size_layout_has_sdxl_base_s_parameter_count():
    from standalone.sgm_unet import SgmUNet, layout_from_shapes, sdxl_base_layout

    with torch.device("meta"):
        unet = SgmUNet(sdxl_base_layout())
    shapes = {k: tuple(v.shape) for k, v in unet.state_dict().items()}
    assert len(shapes) == 1680 and sum(v.numel() for v in unet.state_dict().values()) == 2_567_463_684
    assert layout_from_shapes(shapes) == sdxl_base_layout()


def test_unet_matches_diffusers(sdxl_model, diffusers_unet):
    x, t, context, pooled, time_ids, y = unet_inputs()
    with torch.no_grad():
        ours = sdxl_model.unet(x, t, context=context, y=y)
        theirs = diffusers_unet(x, t, encoder_hidden_states=context,
                                added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample
    assert theirs.abs().max() > 1e-2
    assert rel_err(ours, theirs) <= 1e-5


def test_unet_with_one_controlnet_unit_matches_diffusers(sdxl_model, sdxl_controlnet, diffusers_unet,
                                                         diffusers_controlnet):
    x, t, context, pooled, time_ids, y = unet_inputs()
    hint = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(9))
    added = {"text_embeds": pooled, "time_ids": time_ids}
    with torch.no_grad():
        down, mid = diffusers_controlnet(x, t, context, hint.expand(2, -1, -1, -1), added_cond_kwargs=added,
                                         return_dict=False)
        theirs = diffusers_unet(x, t, encoder_hidden_states=context, added_cond_kwargs=added,
                                down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        plain = diffusers_unet(x, t, encoder_hidden_states=context, added_cond_kwargs=added).sample
        hook = ControlHook(sdxl_model.unet, [BoundUnit(sdxl_controlnet, hint)], lambda *a: CallInfo(fraction=0.5),
                           family="sdxl")
        with hook.applied():
            ours = sdxl_model.unet(x, t, context=context, y=y)
    assert len(down) + 1 == sdxl_controlnet.num_outputs == 10
    assert (theirs - plain).abs().max() > 1e-3 * plain.abs().max()  # the unit does change the output
    assert rel_err(ours, theirs) <= 1e-5


@pytest.mark.parametrize("which", ["clip_l", "clip_g"])
def test_text_encoders_match_transformers_with_diffusers_conversion(checkpoint, sdxl_model, which):
    """Same weights through diffusers' own mapping of the original names, incl. the pooled projection and the
    penultimate layer that SDXL uses."""
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_open_clip_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    if which == "clip_l":
        theirs = CLIPTextModel(CLIPTextConfig(**DEMO_CLIP_L))
        weights = convert_ldm_clip_checkpoint(checkpoint, remove_prefix=SDXL_CLIP_L_PREFIX)
        weights.pop("text_model.embeddings.position_ids", None)
    else:
        theirs = CLIPTextModelWithProjection(CLIPTextConfig(**DEMO_CLIP_G))
        weights = convert_open_clip_checkpoint(theirs, checkpoint, prefix=SDXL_CLIP_G_PREFIX)
    missing, unexpected = theirs.load_state_dict(weights, strict=False)
    assert not unexpected and set(missing) <= {"text_model.embeddings.position_ids"}
    theirs.eval()
    tower = sdxl_model.prompts.towers[0 if which == "clip_l" else 1]
    ids = torch.tensor([[49406, 320, 1125, 539, 320, 2368, 49407] + [49407] * 70])
    if which == "clip_g":
        ids[0, 7:] = 0  # open_clip's padding after the end token
    with torch.no_grad():
        a = tower.model(input_ids=ids, output_hidden_states=True)
        b = theirs(input_ids=ids, output_hidden_states=True)
    assert rel_err(a.hidden_states[-2], b.hidden_states[-2]) <= 1e-5
    assert rel_err(a.last_hidden_state, b.last_hidden_state) <= 1e-5
    if which == "clip_g":
        assert rel_err(a.text_embeds, b.text_embeds) <= 1e-5
        # the pooled output is the final-normed last layer at the end token, through the projection
        manual = theirs.text_projection(b.last_hidden_state[0, 6])
        assert rel_err(a.text_embeds[0], manual) <= 1e-5


def test_prompt_conditioning_is_the_two_penultimate_layers_and_bigg_pooled(sdxl_model):
    """What the pipeline hands the UNet: CLIP-L hidden_states[-2] (no final norm) ++ bigG hidden_states[-2]
    (no final norm), 64 + 64 features here (768 + 1280 in the published model), and bigG's pooled output."""
    prompts = sdxl_model.prompts
    enc = prompts.encode_with_pooled(["a photo of a cat"])
    chunk = prompts.chunks("a photo of a cat")[0]
    ids = torch.tensor([chunk.ids])
    padded = ids.clone()
    padded[0, 7:] = 0
    with torch.no_grad():
        clip_l = prompts.towers[0].model(input_ids=ids, output_hidden_states=True)
        clip_g = prompts.towers[1].model(input_ids=padded, output_hidden_states=True)
    assert enc.context.shape == (1, 77, DEMO_SDXL_UNET.context_dim)
    assert torch.equal(enc.context[..., :64], clip_l.hidden_states[-2])
    assert torch.equal(enc.context[..., 64:], clip_g.hidden_states[-2])
    assert torch.equal(enc.pooled, clip_g.text_embeds)
    # 80 words: two chunks; the pooled vector stays the first chunk's (A1111's zs[0].pooled)
    long = prompts.encode_with_pooled([" ".join(["cat"] * 80)])
    first = prompts.encode_with_pooled([" ".join(["cat"] * 75)])
    assert long.context.shape[1] == 154 and torch.equal(long.pooled, first.pooled)
    # emphasis scales each encoder's part and restores each part's own mean
    weighted = prompts.encode_with_pooled(["a photo of a (cat:1.5)"]).context
    for part in (slice(0, 64), slice(64, 128)):
        assert torch.allclose(weighted[..., part].mean(), enc.context[..., part].mean(), atol=1e-6)
        assert not torch.equal(weighted[..., part], enc.context[..., part])


def test_size_conditioning_is_sgms_sinusoidal_embedding(diffusers_unet):
    """y = [pooled, emb(h), emb(w), emb(top), emb(left), emb(h), emb(w)]: diffusers' add_time_proj gives it."""
    pooled = torch.randn(2, 64)
    y = sdxl_vector(pooled, DEMO_SDXL_UNET.adm_in_channels, original=(768, 1024), target=(768, 1024), crop=(16, 8))
    time_ids = torch.tensor([768.0, 1024, 16, 8, 768, 1024])
    expected = diffusers_unet.add_time_proj(time_ids).reshape(1, -1).expand(2, -1)
    assert torch.equal(y[:, :64], pooled)
    assert torch.allclose(y[:, 64:], expected, atol=1e-6)
