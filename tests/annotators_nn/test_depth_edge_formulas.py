"""Pre/post-processing of TEED/Anyline, ZoeDepth, LeReS (and its boosting), DSINE and the hand refiner on
inputs whose answer is known."""

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from annotator.neural import dsine, hand_refiner, leres, leres_boost, teed, zoe
from lib_controlnet.errors import MissingDependencyError

# --- TEED / Anyline ---------------------------------------------------------------------------------------


def test_smish_is_x_tanh_log_one_plus_sigmoid():
    x = torch.linspace(-6, 6, 25, dtype=torch.float64)
    assert torch.allclose(teed.smish(x), x * torch.tanh(torch.log(1 + torch.sigmoid(x))))


def test_edges_are_the_safe_stepped_sigmoid_of_the_mean():
    edge = np.array([[0.0, 0.32, 0.34, 0.7, 0.99]])
    assert teed.edges_to_uint8(edge, 0).tolist() == [[0, 81, 86, 178, 252]]
    assert teed.edges_to_uint8(edge, 2).tolist() == [[0, 0, 127, 255, 255]]  # thirds, then halves, clipped


def test_lines_under_twelve_pixels_go_and_diagonal_neighbours_are_apart():
    lines = np.zeros((20, 30), np.uint8)
    lines[2, 2:14] = 40  # 12 pixels: kept
    lines[6, 2:13] = 90  # 11 pixels: removed
    for i in range(12):  # a 12-pixel diagonal is 12 separate 4-connected pixels: removed
        lines[8 + i, 15 + i] = 200
    out = teed.without_small_lines(lines)
    assert np.array_equal(out[2], lines[2]) and not out[6].any() and not out[8:].any()
    assert out.dtype == np.uint8


def test_anyline_screens_the_lines_over_the_edges():
    base, top = np.array([0.0, 0.5, 1.0, 0.25]), np.array([0.0, 0.5, 0.3, 0.0])
    assert np.allclose(teed.screen(base, top), [0.0, 0.75, 1.0, 0.25])


# --- ZoeDepth ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape, expected", [((512, 512), (512, 512)), ((448, 640), (384, 544)),
                                             ((384, 512), (384, 512)), ((700, 300), (384, 160))])
def test_zoe_resizes_by_the_scale_nearer_one_to_multiples_of_32(shape, expected):
    assert zoe.network_size(*shape) == expected


def test_zoe_map_is_percentile_normalised_and_near_is_bright():
    depth = np.linspace(1.0, 11.0, 101, dtype=np.float32).reshape(1, -1)
    near, far = np.percentile(depth, 2), np.percentile(depth, 85)
    expected = ((1.0 - (depth - near) / (far - near)) * 255.0).clip(0, 255).astype(np.uint8)
    out = zoe.depth_to_uint8(depth)
    assert np.array_equal(out, expected) and out[0, 0] == 255 and out[0, -1] == 0
    assert not zoe.depth_to_uint8(np.full((4, 4), 2.0, np.float32)).any()  # flat: black, not NaN


def test_zoe_attractors_pull_bins_by_dx_over_one_plus_300_dx_squared():
    centres = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)
    points = torch.tensor([1.1, 1.9, 3.0]).view(1, 3, 1, 1)
    out = zoe.attract(points, centres).flatten()
    for b, c in enumerate((1.0, 2.0)):
        pull = np.mean([(a - c) / (1 + 300 * (a - c) ** 2) for a in (1.1, 1.9, 3.0)])
        assert math.isclose(float(out[b]), c + pull, rel_tol=1e-6)


def test_zoe_log_binomial_is_a_distribution_peaking_at_p_times_bins():
    p = torch.tensor([0.1, 0.5, 0.9]).view(1, 3, 1)
    probabilities = zoe.log_binomial(p, torch.ones(1, 1, 3, 1), 64)
    assert probabilities.shape == (1, 64, 3, 1)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(1, 3, 1), atol=1e-5)
    assert [int(i) for i in probabilities.argmax(dim=1).flatten()] == [6, 31, 57]  # ~ p * 63
    sharp = zoe.log_binomial(p, torch.full((1, 1, 3, 1), 0.05), 64)
    assert (sharp.max(dim=1).values > probabilities.max(dim=1).values).all()  # lower temperature: sharper


def test_zoe_relative_position_index_matches_the_offset_formula():
    rows, cols = 2, 3
    index = zoe.relative_position_index(rows, cols)
    table = (2 * rows - 1) * (2 * cols - 1)
    assert index.shape == (7, 7) and index[0, 0] == table + 2 and index[0, 3] == table and index[4, 0] == table + 1
    cells = [(r, c) for r in range(rows) for c in range(cols)]
    for i, (r1, c1) in enumerate(cells, start=1):
        for j, (r2, c2) in enumerate(cells, start=1):
            assert index[i, j] == (r1 - r2 + rows - 1) * (2 * cols - 1) + (c1 - c2 + cols - 1)


def test_zoe_padding_and_flip_average_keep_the_image_size_and_symmetry():
    class Mirror(torch.nn.Module):  # depth = mean intensity: a flipped image gives the flipped depth
        def forward(self, x):
            return x.mean(dim=1)

    x = torch.rand(1, 3, 50, 70)
    out = zoe._metric(Mirror(), x)
    assert out.shape == (1, 50, 70)
    inside = ((x - 0.5) / 0.5).mean(dim=1)  # bilinear down and bicubic up: close to the input, not equal
    assert (out - inside).abs().mean() < 0.2


# --- LeReS ------------------------------------------------------------------------------------------------


def test_leres_map_thresholds_near_then_inverts_then_thresholds_background():
    depth = np.linspace(0.0, 1.0, 256, dtype=np.float32).reshape(16, 16)
    wide = (65535 * depth).astype(np.uint16)
    eight = cv2.convertScaleAbs(wide, alpha=255 / 65535)
    assert np.array_equal(leres.depth_to_uint8(depth, 0, 0), 255 - eight)
    near = leres.depth_to_uint8(depth, 20, 0)
    assert np.array_equal(near, 255 - np.where(eight > 51, eight, 0))  # zeroed near pixels become white
    both = leres.depth_to_uint8(depth, 20, 50)
    inverted = 255 - np.where(eight > 51, eight, 0)
    assert np.array_equal(both, np.where(inverted > 127.5, inverted, 0))
    assert np.array_equal(leres.depth_to_uint8(np.ones((3, 3), np.float32), 0, 0), np.full((3, 3), 255))


def test_leres_estimate_normalises_rgb_and_resizes_both_ways():
    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen["x"] = x
            return x[:, :1] * 0 + x[:, 1:2]

    img = np.random.default_rng(0).random((30, 50, 3)).astype(np.float32)
    out = leres.leres_estimate(Probe(), img, 64, 32, torch.device("cpu"))
    assert seen["x"].shape == (1, 3, 32, 64) and out.shape == (30, 50)
    expected = (cv2.resize(img, (64, 32)) - leres.MEAN) / leres.STD
    assert torch.allclose(seen["x"][0], torch.from_numpy(expected.transpose(2, 0, 1)))  # RGB in [0, 1], not BGR


def test_boost_search_resolution_grows_with_edge_density():
    flat = np.full((512, 512, 3), 0.5, np.float32)
    flat[100:110] = 0.9  # one edge: most of the image is far from it
    busy = (np.indices((512, 512)).sum(axis=0) % 16 < 8).astype(np.float32)[..., None].repeat(3, axis=2)
    assert leres_boost.processing_resolution(flat)[0] == leres_boost.RECEPTIVE_FIELD
    size, share = leres_boost.processing_resolution(busy)
    assert size > leres_boost.RECEPTIVE_FIELD and 0.9 < share <= 1.0
    assert leres_boost.processing_resolution(flat[:100, :100])[0] == leres_boost.RECEPTIVE_FIELD  # too small


def test_boost_max_pool_pads_the_last_blocks_with_zeros():
    x = np.arange(49, dtype=np.float64).reshape(7, 7)
    out = leres_boost.max_pool_blocks(x, 3)  # blocks of 2: a 4 x 4 result
    assert out.shape == (4, 4) and out[0, 0] == 8 and out[3, 3] == 48 and out[0, 3] == 13


def test_boost_patches_cover_the_busy_area_and_come_largest_first():
    img = np.full((1200, 1200, 3), 0.5, np.float32)
    rng = np.random.default_rng(0)
    img[100:700, 150:750] = rng.random((600, 600, 1))  # texture in one corner
    found = leres_boost.patches(img, 896, factor=1.0)
    assert found and [r[2] for r in found] == sorted((r[2] for r in found), reverse=True)
    for x, y, w, h in found:
        assert w == h >= 896 and x >= 0 and y >= 0 and x + w < 1201 and y + h < 1201


def test_blend_mask_is_the_blurred_square_without_blurring_every_pixel():
    size = 320
    square = np.zeros((size, size), np.float32)
    margin = int(0.15 * size)
    square[margin:size - margin, margin:size - margin] = 1
    sigma = int(size / 16)
    blurred = cv2.GaussianBlur(square, (int(2 * np.ceil(2 * sigma) + 1),) * 2, sigma)
    blurred = (blurred - blurred.min()) / (blurred.max() - blurred.min())
    assert np.abs(leres_boost.gaussian_mask(size) - blurred).max() < 1e-6


def test_boosting_patches_restore_detail_where_they_are_cut(monkeypatch):
    """A stand-in network that sees the true depth (channel 0) at the size it is run at, and a merge network
    that keeps the high-resolution estimate: the whole-image estimate at 448 blurs the fine detail of one
    region; the patches over it (selected by the texture there) must bring it back in the right place."""
    height, width = 480, 460
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    region = (slice(330, 450), slice(150, 270))
    truth = xx / width + 0.5 * (yy / height) ** 2
    truth[region] += 0.15 * np.sin(xx[region] / 1.5) * np.sin(yy[region] / 2.0)
    img = np.stack([truth] * 3, axis=2).astype(np.float32)
    img[region][..., 1:] = np.random.default_rng(1).random((120, 120, 2))

    def estimate(x, w, h):
        small = cv2.resize(np.ascontiguousarray(x[..., 0]), (w, h), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (x.shape[1], x.shape[0]), interpolation=cv2.INTER_LINEAR)

    def merge(pair):
        return pair[:, 1:2]

    found = []
    select = leres_boost.patches
    monkeypatch.setattr(leres_boost, "patches", lambda *a: found.extend(select(*a)) or found)
    # R_20 = 448 and an edge share giving a ~1300-pixel target: two 896-pixel patches (the search is tested above)
    monkeypatch.setattr(leres_boost, "processing_resolution", lambda img, base=448: (448, 0.62))
    out = leres_boost.boosted_depth(img, estimate, merge, max_res=max(height, width))
    assert out.shape == (height, width) and found == [[0, 336, 896, 896], [336, 336, 896, 896]]

    def unit(a):
        return (a - a.min()) / (a.max() - a.min())

    base = cv2.resize(leres_boost.double_estimate(img, 448, 448, estimate, merge), (width, height),
                      interpolation=cv2.INTER_CUBIC)
    boosted_error, base_error = np.abs(unit(out) - unit(truth)), np.abs(unit(base) - unit(truth))
    assert boosted_error[region].mean() < 0.5 * base_error[region].mean()
    assert boosted_error.max() < 0.1  # smooth elsewhere: the blended patches agree with the base


# --- DSINE ------------------------------------------------------------------------------------------------


def test_dsine_intrinsics_from_the_field_of_view():
    k = dsine.intrinsics_from_fov(90.0, 300, 400)[0]
    assert torch.allclose(k, torch.tensor([[200.0, 0, 199.5], [0, 200.0, 149.5], [0, 0, 1]]))


def test_ray_relu_turns_normals_towards_the_camera():
    ray = F.normalize(torch.tensor([0.2, -0.1, 1.0]).view(1, 3, 1, 1), dim=1)
    away = F.normalize(torch.tensor([0.0, 0.3, -1.0]).view(1, 3, 1, 1), dim=1)
    facing = F.normalize(torch.tensor([0.1, 0.2, 0.9]).view(1, 3, 1, 1), dim=1)
    assert (dsine.ray_relu(away, ray) * ray).sum() > 0
    assert torch.allclose(dsine.ray_relu(facing, ray), facing, atol=1e-6)  # already facing: unchanged


def test_axis_angle_matrices_are_rodrigues_rotations():
    torch.manual_seed(0)
    v = torch.randn(50, 3, dtype=torch.float64)
    v[0] = 0  # no rotation
    r = dsine.axis_angle_to_matrix(v)
    theta = v.norm(dim=1).clamp_min(1e-12).view(-1, 1, 1)
    a = v / theta.view(-1, 1)
    k = torch.zeros(50, 3, 3, dtype=torch.float64)
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -a[:, 2], a[:, 1], -a[:, 0]
    k = k - k.transpose(1, 2)
    rodrigues = torch.eye(3, dtype=torch.float64) + torch.sin(theta) * k + (1 - torch.cos(theta)) * k @ k
    assert torch.allclose(r, rodrigues, atol=1e-12) and torch.allclose(r[0], torch.eye(3, dtype=torch.float64))


def test_convex_upsampling_with_a_one_hot_mask_copies_the_chosen_neighbour():
    x = torch.arange(12, dtype=torch.float32).view(1, 1, 3, 4)
    mask = torch.full((1, 9, 2, 2, 3, 4), -1e4)
    mask[:, 4] = 0  # all weight on the centre tap: nearest-neighbour upsampling
    assert torch.equal(dsine.convex_upsample(x, mask.view(1, 36, 3, 4), 2), F.interpolate(x, scale_factor=2))
    mask = torch.full((1, 9, 2, 2, 3, 4), -1e4)
    mask[:, 5] = 0  # the right neighbour (replicated at the border)
    shifted = torch.cat([x[..., 1:], x[..., -1:]], dim=3)
    assert torch.equal(dsine.convex_upsample(x, mask.view(1, 36, 3, 4), 2), F.interpolate(shifted, scale_factor=2))


def test_neighbourhoods_replicate_the_border():
    x = torch.arange(6, dtype=torch.float32).view(1, 1, 2, 3)
    near = dsine.neighbours(x, 5)
    assert near.shape == (1, 1, 25, 2, 3)
    assert near[0, 0, :, 0, 0].view(5, 5)[2].tolist() == [0, 0, 0, 1, 2]  # the centre row around pixel (0, 0)


# --- hand refiner -----------------------------------------------------------------------------------------


def test_hand_refiner_says_what_it_would_need():
    with pytest.raises(MissingDependencyError) as info:
        hand_refiner.depth_hand_refiner(np.zeros((64, 64, 3), np.uint8), 512)
    message = str(info.value)
    assert info.value.status_code == 501
    for needed in ("graphormer_hand_state_dict.bin", "hr16/ControlNet-HandRefiner-pruned", "MANO_RIGHT.pkl",
                   "hand_landmarker.task", "does not unpickle"):
        assert needed in message
