"""facexlib: RetinaFace-R50 (detection_Resnet50_Final.pth) and BiSeNet (parsing_bisenet.pth) in plain torch, and
the PuLID face-features pipeline.

- Layouts: digests of the upstream modules' "key:shape" lines (xinntao/facexlib RetinaFace('resnet50') on
  torchvision's resnet50, and BiSeNet(num_class=19)); 27.4 M and 13.3 M values, like the 109 MB and 53 MB files.
- Peers: transformers' ResNet (an independent implementation) on the same random weights gives the same
  ResNet-50 / ResNet-18 features.
- During development both networks were run against the upstream facexlib classes with the same random
  weights (outside the repository): identical RetinaFace outputs, BiSeNet within 1e-6 relative; the prior boxes
  are identical to facexlib's PriorBox.
"""

import cv2
import numpy as np
import pytest
import torch
from nn_test_helpers import PreloadedModels, random_network
from test_published_layouts import layout_digest

from annotator.neural import facexlib_faces as fx
from lib_controlnet.errors import InputError

PUBLISHED = {
    fx.RETINAFACE: ("9d8bd5bc9fe34e150bfb56d5a46607cc85b47c2d15c6c8da5bb21995395c2897", 456, 27_351_657),
    fx.BISENET: ("687aee69419f43d2b3f6b90c16a28c9c8eecf38a6f298f781693f175468ae92c", 191, 13_313_119),
}


@pytest.mark.parametrize("spec", list(PUBLISHED), ids=lambda s: s.weight.name)
def test_layouts_are_the_published_ones(spec):
    with torch.device("meta"):
        state = spec.build(None).state_dict()
    assert layout_digest(state) == PUBLISHED[spec]


def test_published_key_names_spelled_out():
    with torch.device("meta"):
        retina, bisenet = set(fx.RetinaFace().state_dict()), set(fx.BiSeNet().state_dict())
    assert {"body.conv1.weight", "body.layer4.2.bn3.running_var", "body.layer2.0.downsample.0.weight",
            "fpn.output3.0.weight", "fpn.merge1.1.bias", "ssh3.conv7x7_3.1.weight", "ssh1.conv5X5_1.0.weight",
            "ClassHead.2.conv1x1.bias", "BboxHead.0.conv1x1.weight", "LandmarkHead.1.conv1x1.weight"} <= retina
    assert not any(k.startswith("body.fc.") for k in retina)  # torchvision's classifier is not in the file
    assert {"cp.resnet.layer3.0.downsample.1.weight", "cp.arm32.bn_atten.running_mean", "cp.conv_avg.conv.weight",
            "ffm.conv2.weight", "conv_out.conv_out.weight", "conv_out16.conv.bn.bias"} <= bisenet


def _hf_resnet_state(state: dict, prefix: str, bottleneck: bool) -> dict:
    out = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        key = key[len(prefix):]
        parts = key.split(".")
        if parts[0] in ("conv1", "bn1"):
            kind = "convolution" if parts[0] == "conv1" else "normalization"
            out[f"embedder.embedder.{kind}.{parts[1]}"] = value
            continue
        stage, block = int(parts[0][5:]) - 1, parts[1]
        base = f"encoder.stages.{stage}.layers.{block}."
        if parts[2] == "downsample":
            kind = "convolution" if parts[3] == "0" else "normalization"
            out[base + f"shortcut.{kind}.{parts[4]}"] = value
        else:
            index = int(parts[2][-1]) - 1
            kind = "convolution" if parts[2].startswith("conv") else "normalization"
            out[base + f"layer.{index}.{kind}.{parts[3]}"] = value
    return out


@pytest.mark.parametrize("which", ["resnet50", "resnet18"])
def test_backbones_match_transformers_resnet(which):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(2)
    if which == "resnet50":
        backbone, prefix = fx.ResNet(fx.Bottleneck, (3, 4, 6, 3)).eval(), ""  # RetinaFace's `body`
        config = transformers.ResNetConfig(layer_type="bottleneck", depths=[3, 4, 6, 3],
                                           hidden_sizes=[256, 512, 1024, 2048], downsample_in_bottleneck=False)
    else:
        backbone, prefix = fx.ResNet(fx.BasicBlock, (2, 2, 2, 2)).eval(), ""  # BiSeNet's `cp.resnet`
        config = transformers.ResNetConfig(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512])
    with torch.no_grad():
        for name, value in backbone.state_dict().items():
            if name.endswith("running_var"):
                value.uniform_(0.5, 2.0)
            elif value.is_floating_point():
                value.add_(torch.randn_like(value) * 0.02)
    peer = transformers.ResNetModel(config).eval()
    peer.load_state_dict(_hf_resnet_state(backbone.state_dict(), prefix, which == "resnet50"), strict=True)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = peer(x, output_hidden_states=True).hidden_states[2:]  # after stages 2, 3, 4
        got = backbone(x)
    for a, b in zip(got, expected):
        assert a.shape == b.shape and (a - b).abs().max() <= 1e-4 * b.abs().max()


def test_priors_and_decoding_follow_the_ssd_formulas():
    anchors = fx.priors(100, 130)
    assert len(anchors) == 2 * (13 * 17 + 7 * 9 + 4 * 5)  # ceil(100/8) x ceil(130/8) cells ... 2 sizes each
    assert torch.allclose(anchors[0], torch.tensor([4 / 130, 4 / 100, 16 / 130, 16 / 100]))
    assert torch.allclose(anchors[1], torch.tensor([4 / 130, 4 / 100, 32 / 130, 32 / 100]))  # same cell, size 32
    assert torch.allclose(anchors[2, :2], torch.tensor([12 / 130, 4 / 100]))  # x runs first
    prior = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    loc = torch.tensor([[1.0, -1.0, 0.0, float(np.log(2)) / 0.2]])
    landmarks = torch.tensor([[1.0, 0.0] * 5])
    boxes, points = fx.decode(loc, landmarks, prior)
    # centre (0.5 + 1 * 0.1 * 0.2, 0.5 - 1 * 0.1 * 0.4) = (0.52, 0.46); size (0.2, 0.4 * 2)
    assert torch.allclose(boxes[0], torch.tensor([0.42, 0.06, 0.62, 0.86]))
    assert torch.allclose(points[0], torch.tensor([0.52, 0.5] * 5))


def test_detection_scores_nms_and_the_centre_face():
    torch.manual_seed(0)
    net = fx.RetinaFace().eval()
    with torch.no_grad():
        for heads in (net.ClassHead, net.BboxHead, net.LandmarkHead):
            for head in heads:
                head.conv1x1.weight.zero_()
                head.conv1x1.bias.zero_()
        net.ClassHead[2].conv1x1.bias.copy_(torch.tensor([-9.0, 9.0, -9.0, 9.0]))  # stride 32: faces everywhere
        faces = fx.detect_faces(net, np.zeros((64, 96, 3), np.uint8), torch.device("cpu"))
    # The stride-32 priors (2 x 3 cells, sizes 256 and 512) are the boxes, all scoring the same: the first cell's
    # 256 box suppresses every other 256 one (IoU >= 0.6 > 0.4) but not its 512 sibling (IoU 0.25), which in turn
    # suppresses the other 512 ones.
    assert faces.shape == (2, 15) and (faces[:, 4] > 0.97).all()
    assert np.allclose(faces[:, :4], [[-112, -112, 144, 144], [-240, -240, 272, 272]])
    assert np.allclose(faces[:, 5:].reshape(2, 5, 2), 16)  # zero offsets: the prior's centre
    boxes = np.array([[0, 0, 10, 10, 0.99], [40, 20, 50, 30, 0.98], [90, 0, 100, 10, 0.98]])
    assert fx.centre_face(boxes, 50, 100)[0] == 40
    assert fx.nms(np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 3]], float), np.array([0.9, 0.8, 0.7]),
                  0.4) == [0, 2]


def test_alignment_maps_the_landmarks_onto_facexlibs_template():
    # Landmarks that are the template scaled by 1/4 and moved to (40, 30): the crop is that square scaled up.
    landmarks = fx.FACE_TEMPLATE / 4 + np.array([40, 30])
    image = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    aligned = fx.align_face(image, landmarks)
    expected = cv2.warpAffine(image, np.array([[4.0, 0, -160], [0, 4.0, -120]]), (512, 512),
                              borderValue=fx.BORDER_GREY)
    assert aligned.shape == (512, 512, 3) and np.abs(aligned.astype(int) - expected).max() <= 2


def test_face_features_are_grey_with_the_references_classes_white():
    torch.manual_seed(1)
    parser = random_network(fx.BISENET, seed=4, scale=0.05)
    face = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        out = fx.face_features(face, parser, torch.device("cpu"))
        x = (torch.from_numpy(face / 255.0).permute(2, 0, 1)[None].float() - torch.tensor(fx.PARSE_MEAN).view(
            1, 3, 1, 1).float()) / torch.tensor(fx.PARSE_STD).view(1, 3, 1, 1).float()
        classes = parser(x).argmax(1)[0].numpy()
    white = np.isin(classes, fx.WHITE_CLASSES)
    grey = (face @ np.array([0.299, 0.587, 0.114]))
    assert out.shape == (64, 64, 3) and (out[white] == 255).all()
    assert np.abs(out[~white][:, 0].astype(float) - grey[~white]).max() <= 1.0
    assert white.any() and (~white).any()


def test_facexlib_module_end_to_end(photo, monkeypatch):
    """The whole module with the detector's answer fixed (random weights find no face): the centre face of two
    is aligned and parsed into a 512 x 512 map; no face is a 422."""
    parser = random_network(fx.BISENET, seed=4, scale=0.05)
    models = PreloadedModels({"detection_Resnet50_Final.pth": torch.nn.Identity(), "parsing_bisenet.pth": parser})
    seen = {}

    def fake_detect(net, bgr, device):
        seen["shape"] = bgr.shape
        near = np.concatenate([[300, 200, 400, 300, 0.99], (fx.FACE_TEMPLATE / 5 + [300, 200]).ravel()])
        far = near.copy()
        far[[0, 2] + list(range(5, 15, 2))] -= 280
        return np.stack([far, near])

    monkeypatch.setattr(fx, "detect_faces", fake_detect)
    out = fx.facexlib(photo, 256, models=models)
    assert seen["shape"] == (512, 640, 3)  # the 256 x 320 photo at a 512 short side, already a multiple of 64
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8
    assert np.array_equal(out[:, :, 0], out[:, :, 1]) and (out == 255).any() and (out < 255).any()
    monkeypatch.setattr(fx, "detect_faces", lambda net, bgr, device: np.zeros((0, 15)))
    with pytest.raises(InputError, match="no face"):
        fx.facexlib(photo, 256, models=models)
