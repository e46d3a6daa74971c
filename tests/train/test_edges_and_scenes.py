"""Edge F1 (how the toy's adherence is measured) and the scene generator (seeded, captions that say what is drawn)."""

import numpy as np

from lib_controlnet.train.edges import canny_edges, edge_f1, image_edge_f1
from lib_controlnet.train.toy.scenes import (
    COLOURS,
    Scene,
    Shape,
    caption,
    position_words,
    render,
    sample_scene,
    shape_mask,
)


def square_outline(size=64, top=20, left=20, side=20):
    edges = np.zeros((size, size), dtype=bool)
    edges[top, left:left + side] = edges[top + side, left:left + side] = True
    edges[top:top + side, left] = edges[top:top + side + 1, left + side] = True
    return edges


def test_f1_is_one_for_the_same_edges_and_within_the_tolerance():
    ref = square_outline()
    assert edge_f1(ref, ref) == 1.0
    assert edge_f1(np.roll(ref, 2, axis=1), ref) == 1.0  # 2 px off: still a hit at 2 px
    assert edge_f1(np.roll(ref, 2, axis=1), ref, tolerance=1) < 0.6


def test_f1_falls_with_distance_and_is_zero_without_edges():
    ref = square_outline()
    far = np.roll(ref, (6, 6), axis=(0, 1))
    assert edge_f1(far, ref) < 0.3
    assert edge_f1(np.zeros_like(ref), ref) == 0.0
    assert edge_f1(ref, np.zeros_like(ref)) == 0.0
    assert edge_f1(np.zeros_like(ref), np.zeros_like(ref)) == 1.0


def test_f1_of_half_the_edges_balances_precision_and_recall():
    ref = square_outline()
    half = ref.copy()
    half[:, :30] = False
    f1 = edge_f1(half, ref)  # precision 1, recall ~ the share kept
    recall = half.sum() / ref.sum()
    assert abs(f1 - 2 * recall / (1 + recall)) < 0.08


def test_a_rendered_scene_scores_against_its_own_canny_map():
    scene = Scene("white", (Shape("square", "red", 0.5, 0.5, 0.25, 0.3),))
    image = render(scene, 64, 64)
    edges = canny_edges(image)
    assert edges.any()
    assert image_edge_f1(image, edges) == 1.0
    assert image_edge_f1(np.full_like(image, 245), edges) == 0.0


def test_scenes_are_seeded_and_captions_name_what_is_drawn():
    a = [sample_scene(np.random.default_rng(4)) for _ in range(3)]
    b = [sample_scene(np.random.default_rng(4)) for _ in range(3)]
    assert a == b
    rng = np.random.default_rng(1)
    for _ in range(40):
        scene = sample_scene(rng)
        image = render(scene, 64, 64)
        text = caption(scene)
        assert text.endswith(f"on a {scene.background} background")
        for shape in scene.shapes:
            assert f"{shape.colour} {shape.kind} {shape.position}" in text
            inside = image[shape_mask(shape, 64, 64)].astype(float)
            # flat colours: the median pixel inside a shape is its colour
            assert np.abs(np.median(inside, axis=0) - COLOURS[shape.colour]).max() < 2
        assert len({s.colour for s in scene.shapes} | {scene.background}) == len(scene.shapes) + 1


def test_position_words():
    assert position_words(0.1, 0.1) == "at the top left"
    assert position_words(0.5, 0.9) == "at the bottom"
    assert position_words(0.9, 0.5) == "on the right"
    assert position_words(0.5, 0.5) == "in the center"
