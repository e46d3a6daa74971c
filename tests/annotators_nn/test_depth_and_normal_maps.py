"""depth_midas, normal_midas, depth_anything_v2 and normal_bae on a real photo with random weights in the
published layouts, and their pre/post-processing against the reference's formulas."""

import cv2
import numpy as np
import pytest
import torch
from nn_test_helpers import PreloadedModels, random_network

from annotator.neural import depth_anything, midas, normal_bae


@pytest.fixture(scope="module")
def models():
    nets = {spec.weight.name: random_network(spec, seed=n)
            for n, spec in enumerate([midas.MIDAS, normal_bae.NORMAL_BAE])}
    torch.manual_seed(5)
    small = depth_anything.DepthAnythingV2(depth_anything.SIZES[384])  # the published ViT-S checkpoint's layout
    with torch.no_grad():
        for p in small.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        small.depth_head.scratch.output_conv2[2].bias.add_(0.5)  # keep the final ReLU's output positive
    nets[depth_anything.DEPTH_ANYTHING_V2.weight.name] = small.eval()
    return PreloadedModels(nets)


def test_depth_midas_is_normalised_inverse_depth(photo, models):
    out = midas.depth_midas(photo, 128, models=models)
    assert out.shape == (128, 160, 3) and out.dtype == np.uint8
    grey = out[:, :, 0]
    assert np.array_equal(grey, out[:, :, 2]) and grey.min() < grey.max()


def test_normal_midas_unit_normals_and_the_background_threshold(photo, models):
    out = midas.normal_midas(photo, 128, 0.4, models=models)
    assert out.shape == (128, 160, 3) and out.dtype == np.uint8
    n = (out.astype(np.float64) - 127.5) / 127.5
    assert np.allclose(np.linalg.norm(n, axis=2), 1.0, atol=0.03)  # uint8 rounding of unit vectors
    flat = midas.normal_midas(photo, 128, 1.0, models=models)  # all but the nearest pixel is "background"
    facing = (flat[:, :, 0] == 255) & (np.abs(flat[:, :, 1:].astype(int) - 127) <= 1).all(axis=2)
    assert facing.mean() > 0.99


def test_normal_from_depth_follows_the_reference_formula():
    rng = np.random.default_rng(0)
    depth = cv2.GaussianBlur(rng.random((40, 50)).astype(np.float32), (0, 0), 3) * 10
    for threshold in (0.0, 0.4):
        # The reference, written with torch for the normalisation as it does
        d = torch.from_numpy(depth.copy())
        rel = d - d.min()
        rel = (rel / rel.max()).numpy()
        x = cv2.Sobel(depth, cv2.CV_32F, 1, 0, ksize=3)
        y = cv2.Sobel(depth, cv2.CV_32F, 0, 1, ksize=3)
        x[rel < threshold] = 0
        y[rel < threshold] = 0
        normal = np.stack([x, y, np.ones_like(x) * np.pi * 2.0], axis=2)
        normal /= np.sum(normal ** 2.0, axis=2, keepdims=True) ** 0.5
        expected = (normal * 127.5 + 127.5).clip(0, 255).astype(np.uint8)[:, :, ::-1]
        assert np.array_equal(midas.normal_from_depth(depth, threshold), expected)
        assert np.array_equal(midas.depth_to_uint8(depth), (rel * 255.0).clip(0, 255).astype(np.uint8))


def test_depth_anything_v2_map(photo, models):
    out = depth_anything.depth_anything_v2(photo, 128, models=models)
    assert out.shape == (128, 160, 3) and out.dtype == np.uint8
    assert out[:, :, 0].min() == 0 and out[:, :, 0].max() == 255  # min-max normalised


@pytest.mark.parametrize("shape, expected", [((256, 320), (518, 644)), ((512, 512), (518, 518)),
                                             ((640, 384), (868, 518)), ((64, 1000), (518, 8092))])
def test_depth_anything_input_is_at_least_518_in_multiples_of_14(shape, expected):
    x = depth_anything.network_input(np.zeros(shape + (3,), np.uint8))
    assert x.shape == (1, 3) + expected and x.dtype == np.float32
    assert np.allclose(x[0, :, 0, 0], -np.array([0.485, 0.456, 0.406]) / np.array([0.229, 0.224, 0.225]))


def test_depth_anything_position_embedding_uses_dinov2s_offset_scale():
    net = depth_anything.DinoV2(depth_anything.SIZES[384], image_size=70)  # 5 x 5 grid
    torch.nn.init.normal_(net.pos_embed)
    assert net.position_embedding(5, 5) is net.pos_embed
    resized = net.position_embedding(3, 7)
    assert resized.shape == (1, 1 + 21, 384) and torch.equal(resized[:, 0], net.pos_embed[:, 0])
    grid = net.pos_embed[:, 1:].reshape(1, 5, 5, -1).permute(0, 3, 1, 2)
    by_size = torch.nn.functional.interpolate(grid, size=(3, 7), mode="bicubic").permute(0, 2, 3, 1).reshape(1, 21, -1)
    assert not torch.allclose(resized[:, 1:], by_size)  # (n + 0.1) / 5 scaling, not "to n"


def test_normal_bae_map_is_a_unit_normal_field(photo, models):
    out = normal_bae.normal_bae(photo, 128, models=models)
    assert out.shape == (128, 160, 3) and out.dtype == np.uint8
    n = out.astype(np.float64) / 255.0 * 2 - 1
    assert np.allclose(np.linalg.norm(n, axis=2), 1.0, atol=0.03)


def test_normal_bae_refines_to_full_resolution_with_kappa(models):
    net = models.nets["scannet.pt"]
    with torch.no_grad():
        out = net(torch.randn(1, 3, 64, 96))
    assert out.shape == (1, 4, 64, 96)
    assert torch.allclose(out[:, :3].norm(dim=1), torch.ones(1, 64, 96), atol=1e-4) and (out[:, 3] > 0.01).all()
