"""The result cache: keyed by image bytes, module and params; bounded; never hands out shared arrays."""

import numpy as np
import pytest

from annotator.canny import canny
from lib_controlnet.preprocessors import (
    Params,
    Preprocessor,
    ResultCache,
    Slider,
    default_registry,
    resolve_params,
    run_preprocessor,
)


class Counting:
    """A real preprocessor (canny) that counts how often it actually runs."""

    def __init__(self):
        self.calls = 0

    def __call__(self, image, params):
        self.calls += 1
        return canny(image, params.resolution, params.slider_1, params.slider_2)


@pytest.fixture
def counting_canny():
    counter = Counting()
    preprocessor = Preprocessor(name="counting_canny", run=counter, slider_1=Slider("Low", 100, 1, 255),
                                slider_2=Slider("High", 200, 1, 255))
    return preprocessor, counter


def test_same_image_and_params_hit_the_cache(counting_canny, astronaut_rgb):
    p, counter = counting_canny
    cache = ResultCache()
    first = run_preprocessor(p, astronaut_rgb, Params(512, 100, 200), cache=cache)
    again = run_preprocessor(p, astronaut_rgb.copy(), Params(512, 100, 200), cache=cache)  # equal bytes
    assert counter.calls == 1 and cache.hits == 1
    assert np.array_equal(first.map, again.map)
    run_preprocessor(p, astronaut_rgb, Params(512, 101, 200), cache=cache)  # other params
    changed = astronaut_rgb.copy()
    changed[0, 0, 0] ^= 1
    run_preprocessor(p, changed, Params(512, 100, 200), cache=cache)  # one bit of the image differs
    assert counter.calls == 3


def test_callers_cannot_poison_the_cache(counting_canny, astronaut_rgb):
    p, _ = counting_canny
    cache = ResultCache()
    first = run_preprocessor(p, astronaut_rgb, Params(512, 100, 200), cache=cache)
    first.map[:] = 77
    hit = run_preprocessor(p, astronaut_rgb, Params(512, 100, 200), cache=cache)
    assert np.array_equal(hit.map, canny(astronaut_rgb, 512, 100, 200))
    hit.map[:] = 5
    assert not (run_preprocessor(p, astronaut_rgb, Params(512, 100, 200), cache=cache).map == 5).all()


def test_pass_through_results_are_copies_of_the_input(astronaut_rgb):
    image = astronaut_rgb.copy()
    out = run_preprocessor(default_registry().get("none"), image, cache=ResultCache(0))
    out.map[:] = 0
    assert np.array_equal(image, astronaut_rgb)


def test_least_recently_used_entry_is_evicted(counting_canny, astronaut_rgb):
    p, counter = counting_canny
    cache = ResultCache(max_entries=2)
    a, b, c = Params(512, 10, 200), Params(512, 20, 200), Params(512, 30, 200)
    for params in (a, b, a, c):  # a is used again before c arrives, so b is the one to go
        run_preprocessor(p, astronaut_rgb, params, cache=cache)
    assert counter.calls == 3 and len(cache) == 2
    run_preprocessor(p, astronaut_rgb, a, cache=cache)
    assert counter.calls == 3
    run_preprocessor(p, astronaut_rgb, b, cache=cache)
    assert counter.calls == 4


def test_cache_is_bounded_by_bytes_too(counting_canny, astronaut_rgb):
    p, _ = counting_canny
    one_entry = astronaut_rgb.nbytes * 2
    cache = ResultCache(max_entries=100, max_bytes=int(one_entry * 2.5))
    for low in range(10, 60, 10):
        run_preprocessor(p, astronaut_rgb, Params(512, low, 200), cache=cache)
    assert len(cache) == 2 and cache.bytes_held <= cache.max_bytes


def test_shuffle_is_cached_only_when_seeded(astronaut_rgb):
    shuffle = default_registry().get("shuffle")
    cache = ResultCache()
    seeded = [run_preprocessor(shuffle, astronaut_rgb, resolve_params(shuffle, seed=3), cache=cache) for _ in "ab"]
    assert cache.hits == 1 and np.array_equal(seeded[0].map, seeded[1].map)
    fresh = [run_preprocessor(shuffle, astronaut_rgb, resolve_params(shuffle), cache=cache) for _ in "ab"]
    assert cache.hits == 1 and len(cache) == 1
    assert not np.array_equal(fresh[0].map, fresh[1].map)


def test_a_seed_does_not_split_the_cache_of_deterministic_modules(counting_canny, astronaut_rgb):
    p, counter = counting_canny
    cache = ResultCache()
    run_preprocessor(p, astronaut_rgb, Params(512, 100, 200, seed=1), cache=cache)
    run_preprocessor(p, astronaut_rgb, Params(512, 100, 200, seed=2), cache=cache)
    assert counter.calls == 1


def test_pose_data_is_cached_with_the_map(grace_hopper_rgb):
    p = default_registry().get("mediapipe_openpose_face")
    cache = ResultCache()
    first = run_preprocessor(p, grace_hopper_rgb, resolve_params(p), cache=cache)
    first.pose["people"].clear()
    hit = run_preprocessor(p, grace_hopper_rgb, resolve_params(p), cache=cache)
    assert cache.hits == 1 and len(hit.pose["people"]) == 1
