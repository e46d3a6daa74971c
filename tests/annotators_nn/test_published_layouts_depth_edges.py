"""The published layouts of TEED/MTEED, ZoeDepth, LeReS and its merge network, DSINE and Depth Anything V1.

Digests as in test_published_layouts.py (sha256 over the sorted "key:shape" lines, key count, value count),
taken from the upstream networks' own module names: the reference extension's annotator/teed/ted.py (TED),
annotator/leres (RelDepthModel('resnext101'), pix2pix define_G 'unet_1024' with no norm), its vendored
zoedepth (ZoeDepth.build_from_config(get_config('zoedepth', 'infer')) with timm 0.6.13's
beit_large_patch16_384) and DSINE's models/dsine.py (sdbds/DSINE, the `dsine` wheel's source) with the
gen-efficientnet B5. Depth Anything V1's checkpoints have V2's layout (the same DINOv2 and DPT head, no
readout projections); test_peer_transformers loads both into transformers strictly.
"""

import pytest
import torch
from test_published_layouts import DEPTH_ANYTHING_V2, layout_digest

from annotator.neural import depth_anything, dsine, leres, teed, zoe

PUBLISHED = {
    teed.TEED: ("82bbe17c3b551090ee72cd265e0293b0e68f6719670316356f93b6416118eb41", 36, 58_910),
    teed.MTEED: ("82bbe17c3b551090ee72cd265e0293b0e68f6719670316356f93b6416118eb41", 36, 58_910),
    leres.LERES: ("e2b52287a6c0e5a7942dd931d6cf782446307ec771bcf61bb7aeb59322a55aec", 712, 115_568_177),
    leres.MERGE: ("097589e0cf501194b38dbcfda218d1de033c7c4ebb931cf1342788a23b9a425d", 21, 79_564_801),
    dsine.DSINE: ("65c7d41aee6910b56681c110b15968c4bdb799a38d03ad17f450c85913d06ad2", 918, 72_737_611),
}
# The upstream ZoeDepth module also holds what the network here rebuilds or never uses: timm's per-block
# relative position indices, its pooling norm and ImageNet classifier (all accepted in the file, see ZOE.ignore).
ZOE_UPSTREAM = ("d63699b6c272a456dc77b5a4940eab9593d8c313bb36264d0e522113b4412c2c", 535, 352_807_107)


def _zoe_extras(size=zoe.PUBLISHED):
    extras = {f"core.core.pretrained.model.blocks.{i}.attn.relative_position_index":
              torch.empty((size.window ** 2 + 1,) * 2) for i in range(size.depth)}
    extras.update({"core.core.pretrained.model.fc_norm.weight": torch.empty(size.dim),
                   "core.core.pretrained.model.fc_norm.bias": torch.empty(size.dim),
                   "core.core.pretrained.model.head.weight": torch.empty(1000, size.dim),
                   "core.core.pretrained.model.head.bias": torch.empty(1000)})
    return extras


@pytest.mark.parametrize("spec", list(PUBLISHED), ids=lambda s: s.weight.name)
def test_state_dict_layout_is_the_published_one(spec):
    with torch.device("meta"):
        assert layout_digest(spec.build(None).state_dict()) == PUBLISHED[spec]


def test_zoedepth_is_the_upstream_module_less_what_it_rebuilds():
    with torch.device("meta"):
        state = zoe.ZOE.build(None).state_dict()
        extras = _zoe_extras()
    assert not set(state) & set(extras)
    assert layout_digest({**state, **extras}) == ZOE_UPSTREAM
    assert len(state) == 507
    assert {"core.core.pretrained.model.blocks.23.attn.q_bias", "seed_bin_regressor._net.2.weight",
            "attractors.3._net.2.bias", "conditional_log_binomial.log_binomial_transform.k_idx",
            "core.core.pretrained.act_postprocess4.4.weight", "conv2.weight"} <= set(state)


@pytest.mark.parametrize("dim", sorted(DEPTH_ANYTHING_V2))
def test_depth_anything_v1_has_v2s_layout_and_reads_the_last_four_blocks(dim):
    with torch.device("meta"):
        net = depth_anything.DEPTH_ANYTHING_V1.build({"pretrained.cls_token": torch.empty(1, 1, dim)})
        assert layout_digest(net.state_dict()) == DEPTH_ANYTHING_V2[dim]
    depth = depth_anything.SIZES[dim].depth
    assert net.taps == tuple(range(depth - 4, depth))


def test_a_few_published_key_names_spelled_out():
    with torch.device("meta"):
        assert {"block_cat.DWconv2.weight", "dblock_3.denselayer1.conv2.bias", "up_block_3.features.5.weight",
                "side_1.conv.weight"} <= set(teed.Teed().state_dict())
        assert {"depth_model.encoder_modules.encoder.layer3.22.conv2.weight",
                "depth_model.decoder_modules.ffm0.ftb2.conv_branch.4.bias",
                "depth_model.decoder_modules.outconv.adapt_conv.3.weight"} <= set(leres.LeresDepth().state_dict())
        innermost = "model.model.1" + ".model.3" * 8 + ".model.1.weight"  # 10 levels, no biases but the last
        merge = leres.MergeNet().state_dict()
        assert innermost in merge and "model.model.3.bias" in merge and "model.model.0.bias" not in merge
        assert {"decoder.up2._net.4.weight", "gru.convq.weight", "up_prob_head.4.bias",
                "encoder.original_model.blocks.6.2.conv_pwl.weight"} <= set(dsine.Dsine().state_dict())
