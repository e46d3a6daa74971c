"""seg_anime_face: the anime face U-Net in the layout of UNet.pth.

- Layout: the digest of the upstream UNet's "key:shape" lines (annotator/anime_face_segment, whose encoder is
  torchvision's mobilenet_v2().features split into five blocks).
- Peer: transformers' MobileNetV2 (an independent implementation) with the same random weights gives the same
  five encoder features.
- During development the whole network was run against the upstream UNet class (with torchvision's
  mobilenet_v2, outside the repository) on the same random weights: identical outputs (max difference 0.0).
"""

import numpy as np
import pytest
import torch
from nn_test_helpers import PreloadedModels, random_network
from test_published_layouts import layout_digest

from annotator.neural import anime_face

PUBLISHED = ("fda47b9e85a651b0b6799e784065ae06764ed0adf381b9220249658b4797ed56", 298, 1_581_375)


@pytest.fixture(scope="module")
def net():
    return random_network(anime_face.ANIME_FACE, seed=5, scale=0.05)


def test_layout_is_the_published_one():
    with torch.device("meta"):
        state = anime_face.ANIME_FACE.build(None).state_dict()
    assert layout_digest(state) == PUBLISHED
    assert {"en_block0.0.0.weight", "en_block0.1.conv.1.weight", "en_block3.6.conv.2.weight",
            "en_block4.2.conv.0.1.running_var", "de_block4.1.weight", "de_block0.1.bias"} <= set(state)


# torchvision's module path inside one feature layer -> transformers' (the stem is features 0 and 1).
_STEM = {"0.0.": "conv_stem.first_conv.convolution.", "0.1.": "conv_stem.first_conv.normalization.",
         "1.conv.0.0.": "conv_stem.conv_3x3.convolution.", "1.conv.0.1.": "conv_stem.conv_3x3.normalization.",
         "1.conv.1.": "conv_stem.reduce_1x1.convolution.", "1.conv.2.": "conv_stem.reduce_1x1.normalization."}
_LAYER = {"conv.0.0.": "expand_1x1.convolution.", "conv.0.1.": "expand_1x1.normalization.",
          "conv.1.0.": "conv_3x3.convolution.", "conv.1.1.": "conv_3x3.normalization.",
          "conv.2.": "reduce_1x1.convolution.", "conv.3.": "reduce_1x1.normalization."}


def _hf_name(index: int, key: str) -> str:
    """torchvision's features.<index>.<key> -> transformers' MobileNetV2Model name."""
    if index <= 1:
        return next(new + key[len(old) - 2:] for old, new in _STEM.items() if f"{index}.{key}".startswith(old))
    return next(f"layer.{index - 2}." + new + key[len(old):] for old, new in _LAYER.items() if key.startswith(old))


def test_encoder_matches_transformers_mobilenet_v2(net):
    transformers = pytest.importorskip("transformers")
    config = transformers.MobileNetV2Config(tf_padding=False, layer_norm_eps=1e-5, hidden_act="relu6")
    peer = transformers.MobileNetV2Model(config, add_pooling_layer=False).eval()
    state = {}
    for block, indices in enumerate(anime_face.ENCODER_BLOCKS):
        for position, index in enumerate(indices):
            prefix = f"en_block{block}.{position}."
            for key, value in net.state_dict().items():
                if key.startswith(prefix):
                    state[_hf_name(index, key[len(prefix):])] = value
    missing, unexpected = peer.load_state_dict(state, strict=False)
    # Their last layer (features 17, 320 channels) and 1280-channel head are not part of the U-Net.
    assert unexpected == [] and [k for k in missing if not k.startswith(("layer.15.", "conv_1x1."))] == []
    stem = []
    peer.conv_stem.register_forward_hook(lambda module, args, out: stem.append(out))
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        hidden = peer(x, output_hidden_states=True).hidden_states
        expected = [stem[0], hidden[1], hidden[4], hidden[11], hidden[14]]  # after features 1, 3, 6, 13, 16
        got = []
        y = x
        for block in range(5):
            y = getattr(net, f"en_block{block}")(y)
            got.append(y)
    for a, b in zip(got, expected):
        assert a.shape == b.shape and (a - b).abs().max() <= 1e-4 * b.abs().max()


def test_network_input_is_torchvisions_resize_to_a_512_short_side():
    assert anime_face.network_input(np.zeros((256, 320, 3), np.uint8)).shape == (1, 3, 512, 640)
    assert anime_face.network_input(np.zeros((333, 500, 3), np.uint8)).shape == (1, 3, 512, 768)  # 768.77
    assert anime_face.network_input(np.zeros((700, 512, 3), np.uint8)).shape == (1, 3, 700, 512)
    x = anime_face.network_input(np.full((512, 512, 3), (255, 0, 128), np.uint8))
    assert np.allclose(x[0, :, 0, 0], (1.0, 0.0, 128 / 255))  # RGB in [0, 1], no normalisation


@pytest.mark.parametrize("resolution", [256, 128])
def test_map_is_the_palette_of_the_argmax(photo, net, resolution):
    models = PreloadedModels({"UNet.pth": net})
    out = anime_face.seg_anime_face(photo, resolution, models=models)
    height, width = resolution, resolution * 5 // 4
    assert out.shape == (height, width, 3) and out.dtype == np.uint8
    colours = {tuple(c) for c in anime_face.PALETTE}
    assert {tuple(c) for c in out.reshape(-1, 3)} <= colours
    if resolution == 256:  # 256 x 320 padded to 256 x 320; the network sees it at 512 x 640
        with torch.no_grad():
            probabilities = net(torch.from_numpy(anime_face.network_input(photo)))
        classes = probabilities[:, :, ::2, ::2].argmax(1)[0].numpy()  # nearest back to 256 x 320
        assert np.array_equal(out, anime_face.PALETTE[classes])
        assert len(np.unique(classes)) > 1
