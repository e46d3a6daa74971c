"""detect(): a pure function of key names and shapes, checked on the published layouts."""

import pytest

from lib_controlnet.errors import ModelFileError
from lib_controlnet.models.detection import FORMAT_RULES, detect
from lib_controlnet.models.networks.arch import DownSpec, ResSpec
from tests.published_shapes import (
    SDXL_FULL,
    SDXL_MID,
    SDXL_SMALL,
    diffusers_shapes,
    sd15_shapes,
    sd21_shapes,
)


@pytest.fixture(scope="module")
def sd15():
    return sd15_shapes()


def test_sd15_original_with_prefix(sd15):
    det = detect(sd15)
    assert (det.format, det.kind, det.family, det.prefix) == ("ldm-controlnet", "controlnet", "sd1", "control_model.")
    arch = det.arch
    assert arch.model_channels == 320 and arch.in_channels == 4 and arch.hint_channels == 3
    assert arch.context_dim == 768 and not arch.linear_projection and arch.adm_in_channels is None
    assert arch.num_outputs == 13 and arch.num_heads == 8
    assert [type(b).__name__ for b in arch.input_blocks].count("DownSpec") == 3
    assert [b.attention_depth for b in arch.input_blocks if isinstance(b, ResSpec)] == [1, 1, 1, 1, 1, 1, None, None]
    assert [c.stride for c in arch.hint_convs] == [1, 1, 2, 1, 2, 1, 2, 1]


def test_sd15_without_prefix_and_inside_a_full_v10_checkpoint(sd15):
    bare = {k.removeprefix("control_model."): v for k, v in sd15.items()}
    assert detect(bare).prefix == "" and detect(bare).family == "sd1"
    # control_sd15_*.pth (v1.0) hold the whole SD model beside the ControlNet: only control_model.* counts.
    full = {**sd15, "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3), "cond_stage_model.x": (1,)}
    det = detect(full)
    assert det.family == "sd1" and all(k.startswith("control_model.") for k in det.key_map)


def test_sd21_is_told_by_context_width_and_linear_projections():
    det = detect(sd21_shapes())
    assert det.family == "sd2" and det.arch.context_dim == 1024 and det.arch.linear_projection
    assert det.arch.head_dim == 64 and det.arch.heads_for(640, 1) == 10  # cldm_v21: 64-wide heads


@pytest.mark.parametrize(
    "config, variant, depths",
    [(SDXL_FULL, "full", [None, None, 2, 2, 10, 10]), (SDXL_MID, "mid", [None, None, None, None, 1, 1]),
     (SDXL_SMALL, "small", [None] * 6)],
)
def test_sdxl_variants_from_diffusers_and_original_layouts(config, variant, depths):
    shapes = diffusers_shapes(config)
    det = detect(shapes)
    assert det.format == "diffusers-controlnet" and det.family == "sdxl" and det.variant == variant
    assert det.arch.adm_in_channels == 2816 and det.arch.num_outputs == 10
    assert [b.attention_depth for b in det.arch.input_blocks if isinstance(b, ResSpec)] == depths
    # the same model in the original layout
    ldm = {"control_model." + new: shapes[old] for old, new in det.key_map.items()}
    det2 = detect(ldm)
    assert det2.format == "ldm-controlnet" and det2.family == "sdxl" and det2.variant == variant
    assert det2.arch == det.arch


def test_difference_controlnet(sd15):
    det = detect({**sd15, "difference": (0,)})
    assert det.format == "ldm-controlnet-difference" and det.is_difference and "difference" not in det.key_map


@pytest.mark.parametrize(
    "shapes, name",
    [
        ({"lllite_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.down.0.weight": (32, 320)}, "controllllite"),
    ],
)
def test_recognised_but_unsupported_formats_say_so(shapes, name):
    with pytest.raises(ModelFileError, match=f"recognised as .*\\({name}\\)"):
        detect(shapes)


def test_unknown_state_dict_lists_every_recognised_format():
    with pytest.raises(ModelFileError) as e:
        detect({"first_stage_model.encoder.conv_in.weight": (128, 3, 3, 3)})
    message = str(e.value)
    assert "not a recognised control model" in message
    for rule in FORMAT_RULES:
        assert rule.name in message


def test_diffusers_config_heads_override_family_defaults():
    shapes = diffusers_shapes(SDXL_FULL)
    det = detect(shapes, {"attention_head_dim": [5, 10, 20]})
    assert det.arch.heads_per_level == (5, 10, 20)
    assert det.arch.heads_for(1280, 2) == 20


def test_detection_reads_no_names_only_shapes(sd15):
    """Renaming the 'file' cannot matter: detect() never sees one. Shapes alone change the answer."""
    widened = {k: (v[0], 1024) if k.endswith("attn2.to_k.weight") else v for k, v in sd15.items()}
    assert detect(widened).family == "sd2"
    assert isinstance(detect(sd15).arch.input_blocks[2], DownSpec)
