"""softedge_teed, softedge_anyline, depth_anything, depth_zoe, depth_leres(++), normal_dsine on a real photo
through the registry as a user calls them, with random weights: TEED, LeReS and DSINE in their published
layouts; ZoeDepth, Depth Anything V1 and the merge network narrowed (their published layouts are pinned in
test_published_layouts_depth_edges and their computation in test_peer_transformers and the README's
comparisons); depth_hand_refiner answers 501."""

import numpy as np
import pytest
import torch
from nn_test_helpers import PreloadedModels, random_network

from annotator.lineart_standard import line_strength
from annotator.neural import depth_anything, dsine, leres, teed, zoe
from lib_controlnet.errors import MissingDependencyError
from lib_controlnet.preprocessors import ResultCache, default_registry, resolve_params, run_preprocessor

TINY_DINO = depth_anything.Size(96, 4, 2, 16, (12, 24, 48, 96), (0, 1, 2, 3))
TINY_ZOE = zoe.ZoeSize(dim=64, depth=4, heads=4, hooks=(0, 1, 2, 3), neck=(16, 32, 64, 64), features=16, window=4,
                       relative_features=8, bins=16, bin_embedding=16)


def _noisy(net, seed, scale=0.02):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * scale)
    return net.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def models():
    nets = {spec.weight.name: random_network(spec, seed=n, scale=0.05 if n < 2 else 0.0)
            for n, spec in enumerate([teed.TEED, teed.MTEED, leres.LERES, dsine.DSINE])}
    v1 = depth_anything.DepthAnythingV2(TINY_DINO, v1=True)
    with torch.no_grad():
        v1.depth_head.scratch.output_conv2[2].bias.add_(0.5)  # keep the final ReLU's output positive
    nets[depth_anything.DEPTH_ANYTHING_V1.weight.name] = _noisy(v1, 7)
    nets[zoe.ZOE.weight.name] = _noisy(zoe.ZoeDepth(TINY_ZOE), 8, 0.05)
    nets[leres.MERGE.weight.name] = _noisy(leres.MergeNet(width=4), 9)
    return PreloadedModels(nets)


@pytest.fixture()
def run(models, monkeypatch):
    from annotator.neural import runtime

    monkeypatch.setattr(runtime, "default_models", lambda: models)
    for module in (teed, zoe, leres, dsine, depth_anything):
        monkeypatch.setattr(module, "default_models", lambda: models)

    def call(name, image, resolution, *sliders):
        p = default_registry().get(name)
        return run_preprocessor(p, image, resolve_params(p, resolution, *sliders), cache=ResultCache(0)).map

    return call


def _grey(out, shape):
    assert out.dtype == np.uint8 and out.shape == shape + (3,)
    assert np.array_equal(out[:, :, 0], out[:, :, 1]) and np.array_equal(out[:, :, 0], out[:, :, 2])
    return out[:, :, 0]


def test_softedge_teed_and_its_safe_steps(photo, run):
    raw = _grey(run("softedge_teed", photo, 128, 0), (128, 160))
    assert raw.std() > 1
    assert set(np.unique(_grey(run("softedge_teed", photo, 128, 2), (128, 160)))) <= {0, 127, 255}


def test_softedge_anyline_lays_lineart_over_mteed_edges(photo, run, models):
    out = _grey(run("softedge_anyline", photo, 256, 2), (256, 320))
    edges = teed.edges_to_uint8(teed.teed_edges(photo, teed.MTEED, models), 2)
    lines = teed.without_small_lines(line_strength(photo))
    assert (out >= edges).all() and (out >= lines).all()  # a screen blend never darkens either layer
    assert np.array_equal(out[lines == 0], edges[lines == 0]) and (out > edges).any()
    assert default_registry().get("softedge_anyline").resolution.value == 1280


def test_depth_anything_v1(photo, run, models):
    assert models.nets["depth_anything_vitl14.pth"].taps == (0, 1, 2, 3)  # the last four of four blocks
    out = _grey(run("depth_anything", photo, 128), (128, 160))
    assert int(out.max()) - int(out.min()) > 100  # min-max normalised over the padded frame


def test_depth_zoe_near_is_bright(photo, run):
    out = _grey(run("depth_zoe", photo, 64), (64, 80))
    assert out.max() == 255 and (out == 0).mean() > 0.1  # beyond the 85th percentile is black


def test_depth_leres_and_its_cut_offs(photo, run):
    plain = _grey(run("depth_leres", photo, 64, 0, 0), (64, 80))
    assert int(plain.max()) - int(plain.min()) > 100  # min-max normalised over the padded frame
    cut = _grey(run("depth_leres", photo, 64, 0, 50), (64, 80))
    assert np.array_equal(cut, np.where(plain > 127.5, plain, 0))


class _Smooth(torch.nn.Module):
    """A cheap stand-in for LeReS (whose forward the test above runs): depth = blurred brightness."""

    def forward(self, x):
        return torch.nn.functional.avg_pool2d(x.mean(dim=1, keepdim=True), 9, stride=1, padding=4)


def test_depth_leres_plus_plus_merges_two_resolutions(photo, run, models, monkeypatch):
    sizes = []
    monkeypatch.setitem(models.nets, "res101.pth", _Smooth())
    monkeypatch.setattr(leres, "leres_estimate", lambda net, img, w, h, device: sizes.append((w, h)) or
                        leres_estimate(net, img, w, h, device))
    out = _grey(run("depth_leres++", photo, 64, 0, 0), (64, 80))
    assert out.std() > 1 and sizes == [(448, 448), (448, 448)]  # R_20 = the receptive field for this image


leres_estimate = leres.leres_estimate


def test_normal_dsine_is_a_unit_normal_field(photo, run):
    out = run("normal_dsine", photo, 64, 60, 2)
    assert out.shape == (64, 80, 3) and out.dtype == np.uint8
    n = out.astype(np.float64) / 255.0 * 2 - 1
    assert np.allclose(np.linalg.norm(n, axis=2), 1.0, atol=0.03)
    other = run("normal_dsine", photo, 64, 30, 2)
    assert not np.array_equal(out, other)  # the field of view enters the rays


def test_depth_hand_refiner_answers_501_naming_what_it_lacks(photo, run):
    with pytest.raises(MissingDependencyError, match="graphormer_hand_state_dict.bin"):
        run("depth_hand_refiner", photo, 128)
