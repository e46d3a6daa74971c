"""seg_ufade20k: UniFormer-S + UPerNet in the layout of upernet_global_small.pth.

- Layout: a digest of the "key:shape" lines. The backbone's names and shapes are those of the upstream
  UniFormer (annotator/uniformer/uniformer.py, global attention in stage 3, as upernet_global_small.py
  configures it); the head's are mmseg's UPerHead, which the strict load into transformers' UperNetHead below
  confirms key for key (transformers renames bn -> batch_norm and conv_seg -> classifier, nothing else).
- Peer: transformers' UperNetHead (an independent port of mmseg's) on the same random weights and features.
- During development the backbone was also run against the upstream uniformer.py with the same random weights
  (outside the repository): the four feature maps agreed within 6e-6 in float32.
"""

import re

import numpy as np
import pytest
import torch
from nn_test_helpers import PreloadedModels, random_network
from test_published_layouts import layout_digest

from annotator.neural import uniformer
from annotator.neural.seg_palettes import ADE20K

PUBLISHED = ("bd642c765c43a81955910f9aaa4466bd7ef6fb16d3d06d1609972c102c9dac97", 406, 50_759_920)


@pytest.fixture(scope="module")
def net():
    return random_network(uniformer.UNIFORMER, seed=4, scale=0.02)


def test_layout_is_the_published_one():
    with torch.device("meta"):
        state = uniformer.UNIFORMER.build(None).state_dict()
    assert layout_digest(state) == PUBLISHED
    assert {"backbone.patch_embed1.proj.weight", "backbone.blocks1.2.attn.weight",
            "backbone.blocks2.3.norm1.running_var", "backbone.blocks3.7.attn.qkv.weight",
            "backbone.blocks4.2.mlp.fc2.bias", "backbone.norm4.weight",
            "decode_head.psp_modules.3.1.conv.weight", "decode_head.psp_modules.0.1.bn.running_mean",
            "decode_head.bottleneck.conv.weight", "decode_head.lateral_convs.2.bn.weight",
            "decode_head.fpn_bottleneck.conv.weight", "decode_head.conv_seg.bias"} <= set(state)
    assert uniformer.UNIFORMER.ignore == ("auxiliary_head.*",)


def test_upernet_head_matches_transformers(net):
    transformers = pytest.importorskip("transformers")
    from transformers.models.upernet.modeling_upernet import UperNetHead

    config = transformers.UperNetConfig(hidden_size=512, pool_scales=[1, 2, 3, 6], num_labels=150)
    peer = UperNetHead(config, in_channels=list(uniformer.EMBED_DIMS))
    head = {k[len("decode_head."):]: v for k, v in net.state_dict().items() if k.startswith("decode_head.")}
    renamed = {re.sub(r"\.bn\.", ".batch_norm.", k.replace("conv_seg.", "classifier.")): v for k, v in head.items()}
    peer.load_state_dict(renamed, strict=True)
    peer.eval()
    torch.manual_seed(0)
    features = [torch.randn(1, c, 16 // 2**i, 16 // 2**i) for i, c in enumerate(uniformer.EMBED_DIMS)]
    with torch.no_grad():
        expected = peer(features)
        got = net.decode_head(features)
    assert got.shape == expected.shape == (1, 150, 16, 16)
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()


def test_test_scale_is_mmcvs_imrescale():
    assert uniformer.test_size(512, 704) == (512, 704)  # already within (2048, 512)
    assert uniformer.test_size(768, 1024) == (512, 683)  # short side to 512, rounded half up
    assert uniformer.test_size(256, 320) == (512, 640)  # enlarged too
    assert uniformer.test_size(512, 4096) == (256, 2048)  # the long side limits


def test_map_is_the_palette_of_the_argmax_at_processing_resolution(photo, net, monkeypatch):
    monkeypatch.setattr(uniformer, "TEST_SCALE", (512, 128))  # the network runs at 128 x 160, not 512 x 640
    models = PreloadedModels({"upernet_global_small.pth": net})
    out = uniformer.seg_ufade20k(photo, 256, models=models)
    assert out.shape == (256, 320, 3) and out.dtype == np.uint8
    padded = uniformer.pad_to(photo)  # 256 x 320 is already a multiple of 64
    x = uniformer.network_input(padded)
    assert x.shape == (1, 3, 128, 160)
    with torch.no_grad():
        logits = net(torch.from_numpy(x))
    logits = torch.nn.functional.interpolate(logits, (256, 320), mode="bilinear", align_corners=False)
    classes = logits.argmax(1)[0].numpy()
    assert np.array_equal(out, ADE20K[classes])
    assert len(np.unique(classes)) > 1  # random weights still split a real photo into several classes


def test_network_input_is_rgb_normalised_with_mmsegs_statistics():
    img = np.zeros((64, 64, 3), np.uint8)
    img[..., 0] = 255  # pure red
    x = uniformer.network_input(img)
    assert x.shape == (1, 3, 512, 512)
    assert np.allclose(x[0, :, 5, 5], (np.array([255, 0, 0]) - uniformer.MEAN) / uniformer.STD, atol=1e-5)
