"""The trainer's two pieces of network surgery: where residuals go (against diffusers' UNet2DConditionModel,
which adds ControlNet residuals its own way) and the paper's initialisation (zero convs, the encoder copy)."""

import pytest
import torch

from lib_controlnet.train.controlnet_init import controlnet_from_unet, controlnet_state_dict, zero_parameter_names
from lib_controlnet.train.inject import residuals_added
from tests.tiny_models import SD_LIKE_UNET, ldm_unet


def diffusers_unet(unet, config):
    """The same weights in diffusers' UNet2DConditionModel, converted by diffusers' own single-file code."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    mc = config["model_channels"]
    levels = len(config["channel_mult"])
    attention = {i for i in range(levels) if 2**i in config["attention_resolutions"]}
    down = [("CrossAttnDownBlock2D" if i in attention else "DownBlock2D") for i in range(levels)]
    up = [("CrossAttnUpBlock2D" if i in attention else "UpBlock2D") for i in reversed(range(levels))]
    dconfig = dict(sample_size=16, in_channels=4, out_channels=4, down_block_types=down, up_block_types=up,
                   block_out_channels=[mc * m for m in config["channel_mult"]], layers_per_block=2,
                   cross_attention_dim=config["context_dim"], attention_head_dim=config["num_heads"],
                   norm_num_groups=32, use_linear_projection=False)
    theirs = UNet2DConditionModel(**dconfig)
    ldm = {"model.diffusion_model." + k: v for k, v in unet.state_dict().items()}
    missing, unexpected = theirs.load_state_dict(convert_ldm_unet_checkpoint(ldm, dconfig), strict=False)
    assert not missing and not unexpected
    return theirs.eval()


@pytest.fixture(scope="module")
def unet():
    return ldm_unet(SD_LIKE_UNET, seed=5).requires_grad_(False)


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 4, 16, 16, generator=g), torch.tensor([999, 250]),
            torch.randn(2, 7, SD_LIKE_UNET["context_dim"], generator=g))


def residual_shapes(unet, x, t, context):
    shapes = []
    hooks = [b.register_forward_hook(lambda m, a, out: shapes.append(out.shape)) for b in unet.input_blocks]
    hooks.append(unet.middle_block.register_forward_hook(lambda m, a, out: shapes.append(out.shape)))
    with torch.no_grad():
        unet(x, t, context)
    for h in hooks:
        h.remove()
    return shapes


def test_residuals_go_where_diffusers_puts_them(unet):
    x, t, context = inputs()
    g = torch.Generator().manual_seed(1)
    residuals = [torch.randn(s, generator=g) * 0.5 for s in residual_shapes(unet, x, t, context)]
    with torch.no_grad(), residuals_added(unet, residuals):
        ours = unet(x, t, context)
    theirs_model = diffusers_unet(unet, SD_LIKE_UNET)
    with torch.no_grad():
        theirs = theirs_model(x, t, context, down_block_additional_residuals=residuals[:-1],
                              mid_block_additional_residual=residuals[-1]).sample
        plain = theirs_model(x, t, context).sample
    assert (theirs - plain).abs().max() > 1e-2  # the residuals matter
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4)
    # and nothing is left on the UNet afterwards
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in unet.modules())
    with torch.no_grad():
        assert torch.allclose(unet(x, t, context), plain, atol=1e-4, rtol=1e-4)


def test_gradients_reach_the_residuals_and_not_the_frozen_unet(unet):
    x, t, context = inputs(2)
    residuals = [torch.zeros(s, requires_grad=True) for s in residual_shapes(unet, x, t, context)]
    with residuals_added(unet, residuals):
        unet(x, t, context).pow(2).mean().backward()
    assert all(r.grad is not None and r.grad.abs().sum() > 0 for r in residuals)
    assert all(p.grad is None for p in unet.parameters())


def test_wrong_residual_count_is_refused(unet):
    with pytest.raises(ValueError, match="13 residuals, got 12"), residuals_added(unet, [torch.zeros(1)] * 12):
        pass


def test_initialisation_copies_the_encoder_and_zeroes_the_zero_convs(unet):
    net = controlnet_from_unet(unet.state_dict(), hint_widths=(16, 16, 32, 32, 64, 64, 128))
    own = net.state_dict()
    base = unet.state_dict()
    copied = [k for k in own if k.startswith(("time_embed.", "input_blocks.", "middle_block."))]
    assert len(copied) > 100 and all(torch.equal(own[k], base[k]) for k in copied)
    zeros = zero_parameter_names(net)
    # 12 zero convs + the middle-block output (weight and bias each) + the hint encoder's last conv
    assert len(zeros) == 2 * 13 + 2 and "input_hint_block.14.weight" in zeros
    assert all(not own[k].any() for k in zeros)
    others = [k for k, _ in net.named_parameters() if k not in zeros and k.startswith("input_hint_block.")]
    assert others and all(own[k].any() for k in others)  # the rest of the hint encoder is random

    # so before training the ControlNet adds exactly nothing
    x, t, context = inputs(3)
    hint = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        residuals = net(x, hint, t, context)
        assert all(not r.any() for r in residuals)
        with residuals_added(unet, residuals):
            controlled = unet(x, t, context)
        assert torch.equal(controlled, unet(x, t, context))


def test_the_file_layout_loads_as_a_published_controlnet(unet, tmp_path):
    from safetensors.torch import save_file

    from lib_controlnet import load_control_model

    net = controlnet_from_unet(unet.state_dict(), hint_widths=(16, 16, 32, 32, 64, 64, 128))
    path = tmp_path / "new.safetensors"
    save_file(controlnet_state_dict(net), str(path))
    model = load_control_model(path)
    assert (model.kind, model.family, model.format, model.num_outputs) == ("controlnet", "sd1", "ldm-controlnet", 13)
    assert model.dtype == torch.float16
    assert model.net.arch == net.arch
