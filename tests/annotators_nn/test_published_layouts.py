"""Every network's state dict has the published file's key names and shapes.

The digests below are sha256 over the sorted "key:shape" lines (shape as comma-separated ints) of the
upstream networks the published files were saved from, computed from the upstream code's module names
(Mikubill/sd-webui-controlnet annotator/: openpose/model.py and face.py with util.transfer's key mapping,
hed, pidinet/model.py, lineart, lineart_anime, manga_line, mlsd/models/mbv2_mlsd_large.py, normalbae/ with its
vendored gen-efficientnet; DepthAnything/Depth-Anything-V2 depth_anything_v2/dpt.py for ViT-S/B/L). MiDaS'
upstream needs timm, so its digest was taken from our network once test_peer_transformers proved, by a strict
load through transformers' key mapping for the published file, that the two layouts correspond one to one.
A renamed or reshaped layer changes the digest and fails the test; the key and parameter counts say by how much.
"""

import hashlib
import math

import pytest
import torch
from nn_test_helpers import random_state

from annotator.neural import depth_anything, lineart, midas, mlsd, normal_bae, openpose, softedge
from annotator.neural.weights import strip_prefix

PUBLISHED = {
    # spec: (sha256 of "key:shape" lines, number of keys, number of values)
    openpose.BODY: ("853d60df0aec18415bf111c118ecd8b7775dc1a5bbefb50bc4244aefee95bbdf", 184, 52_311_446),
    openpose.HAND: ("dfa32efd733f2c5e8e5f437a640206ccc61321c401491925c6d1bf0a1f935fb9", 104, 36_832_324),
    openpose.FACE: ("d04b728e8a36c526954b48e0079e4ea62190bd8e3df73c82750a3107f0197b9d", 104, 38_425_706),
    softedge.HED: ("1fe8e82753c7c99655f9eb7821ca7b51b676e529eacf3330cd2e3fea01725fef", 37, 14_716_168),
    softedge.PIDINET: ("fb234f7df55b5440309c2001e8acc4280d5bffa43ab07d5dddd134a594a3cff0", 83, 710_149),
    lineart.LINEART: ("5dbb613d84dc8113dc550ddb887ab9b3a6cd2c3e722af378b42c77bc7b7e0003", 24, 4_290_945),
    lineart.LINEART_COARSE: ("5dbb613d84dc8113dc550ddb887ab9b3a6cd2c3e722af378b42c77bc7b7e0003", 24, 4_290_945),
    lineart.LINEART_ANIME: ("ffe1f2370428806fd83f07a2a8c1c9f24fc460181fa55c1b78a2b358b81173d9", 32, 54_405_505),
    lineart.MANGA_LINE: ("b22b14d7acf13181e37e7b65c662121f2c202b795d0e4c4b5ac2ba7e3f66e858", 707, 43_134_934),
    mlsd.MLSD: ("ed42850ff0c15ec1ac69fd1c6fc67871272c1048695078dca52ef010d1565eaf", 362, 1_552_681),
    normal_bae.NORMAL_BAE: ("365651165c358b898d873818138a01190b43935d3ae91378cf62f8756cf3d465", 936, 72_602_876),
    midas.MIDAS: ("51e367045011f1b0a61e0eadb63c1d96e31133c7eb5548ac7fbda921c6408b37", 366, 122_377_985),
}
DEPTH_ANYTHING_V2 = {  # embedding width: the published vits / vitb / vitl checkpoints
    384: ("c55b47e73d24abdfc3937fc9167f10d5c06aa1dc85511de3c6537578b0fef1dc", 239, 24_785_089),
    768: ("4d5fbabcc3bbad657a4edc3526ee71a48dfceeed16706300f68d38a43319ac27", 239, 97_470_785),
    1024: ("9c3256f9b8328cd340435feb89d623be189a6aa6d10c10d0dcb554beffb8b6a2", 407, 335_315_649),
}


def layout_digest(state) -> tuple[str, int, int]:
    lines = sorted(f"{k}:{','.join(str(d) for d in v.shape)}" for k, v in state.items())
    return (hashlib.sha256("\n".join(lines).encode()).hexdigest(), len(lines),
            sum(math.prod(v.shape) for v in state.values()))


@pytest.mark.parametrize("spec", list(PUBLISHED), ids=lambda s: s.weight.name + ":" + s.title)
def test_state_dict_layout_is_the_published_one(spec):
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        assert layout_digest(spec.build(None).state_dict()) == PUBLISHED[spec]


@pytest.mark.parametrize("dim", sorted(DEPTH_ANYTHING_V2))
def test_depth_anything_v2_layouts_and_the_size_is_read_from_the_file(dim):
    with torch.device("meta"):
        net = depth_anything.DepthAnythingV2(depth_anything.SIZES[dim])
        assert layout_digest(net.state_dict()) == DEPTH_ANYTHING_V2[dim]
        assert depth_anything.build_from_state(net.state_dict()).size == depth_anything.SIZES[dim]


def test_a_few_published_key_names_spelled_out():
    """Readable anchors for the digests (names as they appear in the files)."""
    with torch.device("meta"):
        _spelled_out()


def _spelled_out():
    assert {"conv1_1.weight", "conv5_5_CPM_L2.bias", "Mconv7_stage6_L1.weight"} <= set(openpose.body_net().state_dict())
    assert {"conv6_2_CPM.weight", "Mconv1_stage2.weight"} <= set(openpose.hand_net().state_dict())
    assert {"norm", "block5.convs.2.weight", "block1.projection.bias"} <= set(softedge.HedNet().state_dict())
    assert {"init_block.weight", "block4_4.conv1.weight", "dilations.3.conv2_4.weight", "attentions.0.conv2.weight",
            "conv_reduces.2.conv.bias", "classifier.weight", "block2_1.shortcut.bias"} <= set(
        softedge.PiDiNet().state_dict())
    assert {"model2.2.conv_block.5.weight", "model4.1.bias"} <= set(lineart.SketchGenerator().state_dict())
    innermost_down = "model.model.1" + ".model.3" * 6 + ".model.1.weight"  # 8 levels deep
    assert innermost_down in lineart.AnimeUnet().state_dict()
    assert {"block5.model.0.shortcut.model.0.weight", "conv15.model.0.running_var"} <= set(
        lineart.MangaLineNet().state_dict())
    assert {"backbone.features.13.conv.3.running_mean", "block23.conv3.weight"} <= set(mlsd.MlsdLarge().state_dict())
    assert {"pretrained.model.patch_embed.backbone.stages.2.blocks.8.conv3.weight",
            "pretrained.model.blocks.11.attn.qkv.bias", "pretrained.act_postprocess4.4.weight",
            "pretrained.act_postprocess3.0.project.0.weight",
            "scratch.refinenet4.resConfUnit1.conv1.weight", "scratch.output_conv.4.bias"} <= set(
        midas.MidasDptHybrid().state_dict())
    assert midas.MIDAS.ignore == ("pretrained.model.head.*",)  # timm's classifier, in the file, unused
    assert {"encoder.original_model.blocks.6.2.se.conv_expand.weight", "encoder.original_model.bn2.running_var",
            "decoder.out_conv_res1.6.bias", "decoder.up4._net.4.running_mean"} <= set(
        normal_bae.NormalBae().state_dict())


def test_dataparallel_prefix_is_dropped_where_the_reference_drops_it():
    state = random_state(softedge.PIDINET)
    wrapped = {"module." + k: v for k, v in state.items()}
    assert strip_prefix("module.")(wrapped).keys() == state.keys()
    assert softedge.PIDINET.adapt(wrapped).keys() == state.keys()
    assert isinstance(softedge.PIDINET.adapt(wrapped)["init_block.weight"], torch.Tensor)
