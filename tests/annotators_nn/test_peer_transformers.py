"""Peer comparison: the same random weights in transformers' DPT-Hybrid (MiDaS) and Depth Anything give the
same depth as our networks: within 1e-5 (relative to the output's scale) in float64, where rounding cannot hide
a difference in the computation, and within 1e-4 in float32 (twelve random transformer blocks amplify the
rounding of different but equivalent kernels, e.g. fused vs. explicit attention).

transformers' classes are independent implementations built to load these very checkpoints (its conversion
scripts rename the published keys one-to-one, splitting qkv). Our published-layout state dict is renamed the
same way here and loaded strictly, so the test also proves that the key sets correspond exactly. transformers
is a test oracle only (installed in the dev venv, never a runtime dependency); without it these tests skip.
"""

import re

import pytest
import torch
from nn_test_helpers import random_network

from annotator.neural import depth_anything, midas, zoe

transformers = pytest.importorskip("transformers")
no_init_weights = pytest.importorskip("transformers.modeling_utils").no_init_weights  # we load every weight


def _split_qkv(state, pattern, target, dim):
    for key in [k for k in state if re.fullmatch(pattern, k)]:
        value = state.pop(key)
        index, kind = re.fullmatch(pattern, key).groups()
        for n, name in enumerate(("query", "key", "value")):
            state[target.format(index=index, name=name, kind=kind)] = value[n * dim:(n + 1) * dim]
    return state


def _renamed(state, rules):
    out = {}
    for key, value in state.items():
        for pattern, replacement in rules:
            key = re.sub(pattern, replacement, key)
        out[key] = value
    return out


FUSION_RULES = [
    (r"refinenet(\d)", lambda m: f"fusion_stage.layers.{4 - int(m.group(1))}"),
    (r"\.out_conv\.", ".projection."), (r"resConfUnit(\d)\.conv(\d)", r"residual_layer\1.convolution\2"),
    (r"layer(\d)_rn", lambda m: f"convs.{int(m.group(1)) - 1}"),
]

MIDAS_RULES = [
    (r"^pretrained\.model\.norm\.", "dpt.layernorm."),
    (r"^pretrained\.model\.cls_token", "dpt.embeddings.cls_token"),
    (r"^pretrained\.model\.pos_embed", "dpt.embeddings.position_embeddings"),
    (r"^pretrained\.model\.patch_embed\.proj\.", "dpt.embeddings.projection."),
    (r"^pretrained\.model\.patch_embed\.backbone\.stem\.conv\.", "dpt.embeddings.backbone.bit.embedder.convolution."),
    (r"^pretrained\.model\.patch_embed\.backbone\.stem\.norm\.", "dpt.embeddings.backbone.bit.embedder.norm."),
    (r"^pretrained\.model\.patch_embed\.backbone\.stages\.(\d+)\.blocks\.",
     r"dpt.embeddings.backbone.bit.encoder.stages.\1.layers."),
    (r"^pretrained\.model\.blocks\.", "dpt.encoder.layer."),
    (r"\.attn\.proj\.", ".attention.output.dense."), (r"\.mlp\.fc1\.", ".intermediate.dense."),
    (r"\.mlp\.fc2\.", ".output.dense."), (r"(layer\.\d+)\.norm1\.", r"\1.layernorm_before."),
    (r"(layer\.\d+)\.norm2\.", r"\1.layernorm_after."),
    (r"^pretrained\.act_postprocess(\d)\.0\.project\.0\.",
     lambda m: f"neck.reassemble_stage.readout_projects.{int(m.group(1)) - 1}.0."),
    (r"^pretrained\.act_postprocess(\d)\.3\.",
     lambda m: f"neck.reassemble_stage.layers.{int(m.group(1)) - 1}.projection."),
    (r"^pretrained\.act_postprocess4\.4\.", "neck.reassemble_stage.layers.3.resize."),
    (r"^scratch\.output_conv\.", "head.head."), (r"^scratch\.", "neck."),
] + FUSION_RULES


def test_midas_dpt_hybrid_matches_transformers_dpt_hybrid():
    ours = random_network(midas.MIDAS, seed=3)
    state = ours.state_dict()
    hf_state = _split_qkv(_renamed(state, MIDAS_RULES), r"dpt\.encoder\.layer\.(\d+)\.attn\.qkv\.(weight|bias)",
                          "dpt.encoder.layer.{index}.attention.attention.{name}.{kind}", midas.VIT_DIM)
    config = transformers.DPTConfig(
        is_hybrid=True, hidden_size=768, reassemble_factors=[1, 1, 1, 0.5], neck_hidden_sizes=[256, 512, 768, 768],
        patch_size=16, use_batch_norm_in_fusion_residual=False, readout_type="project",
        backbone_featmap_shape=[1, 1024, 24, 24], image_size=384,
        layer_norm_eps=1e-6)  # timm's ViT (and so the published model) uses 1e-6; transformers' default is 1e-12
    with no_init_weights():
        peer = transformers.DPTForDepthEstimation(config)
    peer.load_state_dict(hf_state, strict=True)  # every key maps to one of theirs and back
    peer.dpt.embeddings.image_size = (64, 64)  # lift its input-size check; it resizes the embedding itself
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64) * 2 - 1  # 4 x 4 tokens: the 24 x 24 embedding is resized (its hybrid takes squares)
    _assert_same(ours, lambda x: peer(pixel_values=x).predicted_depth, peer, x, (1, 64, 64))


def _assert_same(ours, run_peer, peer, x, shape):
    for dtype, tolerance in ((torch.float64, 1e-5), (torch.float32, 1e-4)):
        ours.to(dtype).eval()
        peer.to(dtype).eval()
        with torch.no_grad():
            expected = run_peer(x.to(dtype))
            got = ours(x.to(dtype))
        assert got.shape == expected.shape == shape
        scale = expected.abs().max()
        assert scale > 0 and (got - expected).abs().max() <= tolerance * scale, dtype


DEPTH_ANYTHING_RULES = [
    (r"^pretrained\.cls_token", "backbone.embeddings.cls_token"),
    (r"^pretrained\.mask_token", "backbone.embeddings.mask_token"),
    (r"^pretrained\.pos_embed", "backbone.embeddings.position_embeddings"),
    (r"^pretrained\.patch_embed\.proj\.", "backbone.embeddings.patch_embeddings.projection."),
    (r"^pretrained\.norm\.", "backbone.layernorm."), (r"^pretrained\.blocks\.", "backbone.encoder.layer."),
    (r"\.ls(\d)\.gamma", r".layer_scale\1.lambda1"), (r"\.attn\.proj\.", ".attention.output.dense."),
    (r"^depth_head\.projects\.(\d)\.", r"neck.reassemble_stage.layers.\1.projection."),
    (r"^depth_head\.resize_layers\.(\d)\.", r"neck.reassemble_stage.layers.\1.resize."),
    (r"^depth_head\.scratch\.output_conv1\.", "head.conv1."),
    (r"^depth_head\.scratch\.output_conv2\.0\.", "head.conv2."),
    (r"^depth_head\.scratch\.output_conv2\.2\.", "head.conv3."), (r"^depth_head\.scratch\.", "neck."),
] + FUSION_RULES


def test_depth_anything_v2_small_matches_transformers_depth_anything(image_size=70):
    """ViT-S in the published layout except for the position embedding's grid: 5 x 5 patches instead of
    37 x 37, to keep the test quick. The input is square at the grid's own size, where neither implementation
    resizes the embedding (they resize it differently otherwise: DINOv2 by a scale factor of (n + 0.1) / 37,
    transformers to n; we follow DINOv2 - checked against the upstream code, see the README)."""
    size = depth_anything.SIZES[384]
    ours = depth_anything.DepthAnythingV2(size, image_size=image_size)
    torch.manual_seed(image_size)
    state = {k: v + torch.randn_like(v) * 0.02 for k, v in ours.state_dict().items()}
    state["depth_head.scratch.output_conv2.2.bias"] += 0.5  # keep the final ReLU's output from being all zero
    ours.load_state_dict(state)
    hf_state = _split_qkv(_renamed(state, DEPTH_ANYTHING_RULES),
                          r"backbone\.encoder\.layer\.(\d+)\.attn\.qkv\.(weight|bias)",
                          "backbone.encoder.layer.{index}.attention.attention.{name}.{kind}", size.dim)
    backbone = transformers.Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                                         image_size=image_size, patch_size=14, out_indices=[3, 6, 9, 12],
                                         apply_layernorm=True, reshape_hidden_states=False, layerscale_value=1.0)
    config = transformers.DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=384, patch_size=14,
                                              fusion_hidden_size=64, neck_hidden_sizes=[48, 96, 192, 384],
                                              depth_estimation_type="relative")
    with no_init_weights():
        peer = transformers.DepthAnythingForDepthEstimation(config)
    peer.load_state_dict(hf_state, strict=True)
    x = torch.randn(1, 3, image_size, image_size)
    _assert_same(ours, lambda x: peer(pixel_values=x).predicted_depth, peer, x, (1, image_size, image_size))


def test_depth_anything_v1_small_matches_transformers_depth_anything(image_size=70):
    """V1 reads the last four blocks (transformers' out_indices 9-12 for ViT-S); otherwise as V2 above."""
    size = depth_anything.SIZES[384]
    ours = depth_anything.DepthAnythingV2(size, image_size=image_size, v1=True)
    assert ours.taps == (8, 9, 10, 11)
    torch.manual_seed(image_size + 1)
    state = {k: v + torch.randn_like(v) * 0.02 for k, v in ours.state_dict().items()}
    state["depth_head.scratch.output_conv2.2.bias"] += 0.5
    ours.load_state_dict(state)
    hf_state = _split_qkv(_renamed(state, DEPTH_ANYTHING_RULES),
                          r"backbone\.encoder\.layer\.(\d+)\.attn\.qkv\.(weight|bias)",
                          "backbone.encoder.layer.{index}.attention.attention.{name}.{kind}", size.dim)
    backbone = transformers.Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                                         image_size=image_size, patch_size=14, out_indices=[9, 10, 11, 12],
                                         apply_layernorm=True, reshape_hidden_states=False, layerscale_value=1.0)
    config = transformers.DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=384, patch_size=14,
                                              fusion_hidden_size=64, neck_hidden_sizes=[48, 96, 192, 384],
                                              depth_estimation_type="relative")
    with no_init_weights():
        peer = transformers.DepthAnythingForDepthEstimation(config)
    peer.load_state_dict(hf_state, strict=True)
    x = torch.randn(1, 3, image_size, image_size)
    _assert_same(ours, lambda x: peer(pixel_values=x).predicted_depth, peer, x, (1, image_size, image_size))


ZOE_RULES = [
    (r"^core\.core\.pretrained\.model\.blocks\.", "backbone.encoder.layer."),
    (r"^core\.core\.pretrained\.model\.patch_embed\.proj\.", "backbone.embeddings.patch_embeddings.projection."),
    (r"^core\.core\.pretrained\.model\.cls_token", "backbone.embeddings.cls_token"),
    (r"\.norm1\.", ".layernorm_before."), (r"\.norm2\.", ".layernorm_after."),
    (r"\.mlp\.fc1\.", ".intermediate.dense."), (r"\.mlp\.fc2\.", ".output.dense."),
    (r"\.gamma_(\d)$", r".lambda_\1"), (r"\.attn\.proj\.", ".attention.output.dense."),
    (r"\.attn\.relative_position_bias_table$",
     ".attention.attention.relative_position_bias.relative_position_bias_table"),
    (r"^core\.core\.pretrained\.act_postprocess(\d)\.0\.project\.",
     lambda m: f"neck.reassemble_stage.readout_projects.{int(m.group(1)) - 1}."),
    (r"^core\.core\.pretrained\.act_postprocess(\d)\.3\.",
     lambda m: f"neck.reassemble_stage.layers.{int(m.group(1)) - 1}.projection."),
    (r"^core\.core\.pretrained\.act_postprocess(\d)\.4\.",
     lambda m: f"neck.reassemble_stage.layers.{int(m.group(1)) - 1}.resize."),
    (r"^core\.core\.scratch\.output_conv\.0\.", "relative_head.conv1."),
    (r"^core\.core\.scratch\.output_conv\.2\.", "relative_head.conv2."),
    (r"^core\.core\.scratch\.output_conv\.4\.", "relative_head.conv3."),
    (r"^core\.core\.scratch\.", "neck."),
    (r"^(conv2|seed_bin_regressor|seed_projector|projectors|attractors|conditional_log_binomial)", r"metric_head.\1"),
    (r"\._net\.0\.", ".conv1."), (r"\._net\.2\.", ".conv2."),
] + FUSION_RULES


def _zoe_to_transformers(state, dim):
    state = {k: v for k, v in state.items() if not k.endswith(("k_idx", "K_minus_1"))}
    for key in [k for k in state if k.endswith(".attn.qkv.weight")]:
        prefix = key[:-len("attn.qkv.weight")]
        qkv, q_bias, v_bias = state.pop(key), state.pop(prefix + "attn.q_bias"), state.pop(prefix + "attn.v_bias")
        for n, name in enumerate(("query", "key", "value")):
            state[f"{prefix}attention.attention.{name}.weight"] = qkv[n * dim:(n + 1) * dim]
        state[f"{prefix}attention.attention.query.bias"] = q_bias
        state[f"{prefix}attention.attention.value.bias"] = v_bias
    return _renamed(state, ZOE_RULES)


def test_zoedepth_matches_transformers_zoedepth():
    """A narrow BEiT (64 wide, 4 blocks, a 4 x 4 position-bias grid) with the published head, run on a 4 x 6
    token input so that both implementations resize the bias tables. The token grid is even, as it always is
    here (the input is resized to multiples of 32): on odd grids MiDaS resizes each fusion output to the next
    level's size while transformers doubles it and resizes the skip instead."""
    size = zoe.ZoeSize(dim=64, depth=4, heads=4, hooks=(0, 1, 2, 3), neck=(16, 32, 64, 64), features=32, window=4,
                       relative_features=8, bins=16, bin_embedding=128, attractors=(16, 8, 4, 1))
    torch.manual_seed(11)
    ours = zoe.ZoeDepth(size)
    state = {k: (v + torch.randn_like(v) * 0.05 if v.is_floating_point() and "K_minus_1" not in k else v)
             for k, v in ours.state_dict().items()}
    ours.load_state_dict(state)
    backbone = transformers.BeitConfig(image_size=64, patch_size=16, num_hidden_layers=4, hidden_size=64,
                                       intermediate_size=256, num_attention_heads=4, use_relative_position_bias=True,
                                       reshape_hidden_states=False, layer_norm_eps=1e-6,  # timm's BEiT
                                       out_features=["stage1", "stage2", "stage3", "stage4"])
    config = transformers.ZoeDepthConfig(backbone_config=backbone, neck_hidden_sizes=[16, 32, 64, 64],
                                         fusion_hidden_size=32, bottleneck_features=32, num_relative_features=8,
                                         bin_embedding_dim=128, num_attractors=[16, 8, 4, 1],
                                         bin_configurations=[{"n_bins": 16, "min_depth": 1e-3, "max_depth": 10.0}])
    with no_init_weights():
        peer = transformers.ZoeDepthForDepthEstimation(config)
    peer.load_state_dict(_zoe_to_transformers(state, 64), strict=True)
    x = torch.rand(1, 3, 64, 96) * 2 - 1
    _assert_same(ours, lambda x: peer(pixel_values=x).predicted_depth, peer, x, (1, 64, 96))
