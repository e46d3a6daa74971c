"""The embedded toy model on a fresh machine, through the real server: what random weights cannot show.

A models folder with no checkpoint: the server runs the embedded toy (trained here on coloured shapes) and its
canny ControlNet. Each request is what a user sends: a scene's picture as the unit's image, module canny (its
default thresholds, pixel perfect), the caption as the prompt. Adherence is the edge F1 (2 px) of the generated
picture's canny edges against the control map, averaged over held-out scenes the ControlNet never trained on.
"""

from __future__ import annotations

import numpy as np
import pytest

from lib_controlnet.train.edges import canny_edges, canny_map, edge_f1
from lib_controlnet.train.toy.adherence import control_scenes
from lib_controlnet.train.toy.prompt_following import prompt_following, summary
from standalone.embedded import CONTROLNET_NAME, TOY_INFOTEXT, embedded_paths
from standalone.server import ServerConfig
from tests.standalone_server.conftest import own_app, serving
from tests.standalone_server.server_helpers import info, ok, pixels, png_b64


def test_the_checkout_holds_the_embedded_files():
    # committed in standalone/embedded/: without them the server would quietly fall back to the random demo
    assert embedded_paths().exist()


TOY_CONTROLNET = CONTROLNET_NAME.removesuffix(".safetensors")
SCENES = control_scenes(6)
HALF = 32


@pytest.fixture(scope="module")
def toy_client(tmp_path_factory):
    import httpx

    # no checkpoint at all
    with own_app(ServerConfig(models_dir=tmp_path_factory.mktemp("fresh-machine"))) as app, serving(app) as url, \
            httpx.Client(base_url=url, timeout=120) as client:
        yield client


def toy_unit(image: np.ndarray, **fields) -> dict:
    unit = {"enabled": True, "module": "canny", "model": TOY_CONTROLNET, "image": png_b64(image),
            "pixel_perfect": True}
    unit.update(fields)
    return unit


def generate(client, k: int, *units, cfg_scale: float = 7.0) -> np.ndarray:
    scene = SCENES.scenes[k]
    payload = {"prompt": scene.caption, "steps": 20, "width": 64, "height": 64, "seed": 100 + k,
               "sampler_name": "Euler", "cfg_scale": cfg_scale}
    if units:
        payload["alwayson_scripts"] = {"controlnet": {"args": list(units)}}
    reply = ok(client.post("/sdapi/v1/txt2img", json=payload))
    return pixels(reply["images"][0]), reply


def control(k: int) -> np.ndarray:
    return canny_edges(SCENES.images[k])


def f1(image: np.ndarray, k: int, columns=slice(None)) -> float:
    return edge_f1(canny_edges(image)[:, columns], control(k)[:, columns])


def mean_f1(client, make_units, **kw) -> float:
    return float(np.mean([f1(generate(client, k, *make_units(k), **kw)[0], k) for k in range(len(SCENES))]))


def test_a_canny_unit_makes_the_picture_follow_its_map_and_the_background_follows_the_prompt(toy_client):
    without, with_unit, following = [], [], []
    for k in range(len(SCENES)):
        plain, _ = generate(toy_client, k)
        made, reply = generate(toy_client, k, toy_unit(SCENES.images[k]))
        without.append(f1(plain, k))
        with_unit.append(f1(made, k))
        following.append(prompt_following(made, SCENES.scenes[k]))
    # the result says what made it
    assert TOY_INFOTEXT in info(reply)["infotexts"][0]
    assert np.mean(with_unit) >= 0.5, with_unit
    assert np.mean(with_unit) >= np.mean(without) + 0.25, (with_unit, without)
    # the caption's background is painted; the shapes' own colours mostly are not (see README: the base is too
    # small to bind colour, kind and place from a caption)
    assert summary(following)["background"] >= 0.8, summary(following)


def test_the_detected_map_is_the_canny_map_the_controlnet_was_trained_on(toy_client):
    _, reply = generate(toy_client, 0, toy_unit(SCENES.images[0]))
    detected = pixels(reply["images"][1])
    assert np.array_equal(detected, canny_map(SCENES.images[0]))


def test_adherence_rises_with_the_weight(toy_client):
    scores = [mean_f1(toy_client, lambda k, w=w: [toy_unit(SCENES.images[k], weight=w)]) for w in (0.0, 0.4, 1.0)]
    assert scores[0] < scores[1] < scores[2], scores
    assert scores[2] - scores[0] >= 0.25, scores


def test_controlnet_is_more_important_still_follows_the_map_at_high_cfg(toy_client):
    # The reference's "ControlNet is more important" (soft weights, control on the conditional half only) adheres
    # here, but less than Balanced (0.54 vs 0.59 at weight 0.5): its soft weights cut the full-resolution
    # residuals this 64x64 model draws its edges with to 0.825^12 before CFG scales them back up.
    without = mean_f1(toy_client, lambda k: [], cfg_scale=12)
    favoured = mean_f1(toy_client, lambda k: [toy_unit(SCENES.images[k], weight=0.5,
                                                       control_mode="ControlNet is more important")], cfg_scale=12)
    assert favoured >= without + 0.25, (favoured, without)


def test_a_unit_that_ends_early_adheres_less(toy_client):
    early = mean_f1(toy_client, lambda k: [toy_unit(SCENES.images[k], guidance_end=0.3)])
    whole = mean_f1(toy_client, lambda k: [toy_unit(SCENES.images[k], guidance_end=1.0)])
    assert early < whole, (early, whole)


def test_the_effective_region_mask_confines_control_to_its_region(toy_client):
    left = np.zeros((64, 64, 3), np.uint8)
    left[:, :HALF] = 255
    halves = {"left": slice(0, HALF), "right": slice(HALF, None)}
    gains = {("masked", side): [] for side in halves} | {("full", side): [] for side in halves}
    for k in range(len(SCENES)):
        plain, _ = generate(toy_client, k)
        region = toy_unit(SCENES.images[k], effective_region_mask=png_b64(left))
        pictures = {"masked": generate(toy_client, k, region)[0],
                    "full": generate(toy_client, k, toy_unit(SCENES.images[k]))[0]}
        for side, columns in halves.items():
            if not control(k)[:, columns].any():
                continue  # no control edge on that side to follow
            for name, picture in pictures.items():
                gains[name, side].append(f1(picture, k, columns) - f1(plain, k, columns))
    mean = {key: float(np.mean(v)) for key, v in gains.items()}
    # inside the region the masked unit adheres about as the whole-picture one does; outside it hardly does
    assert mean["masked", "left"] >= 0.6 * mean["full", "left"] > 0, mean
    assert mean["masked", "right"] < 0.5 * mean["full", "right"], mean
