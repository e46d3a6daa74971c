"""SDXL in a real A1111 WebUI: a full-size random-weight SDXL base checkpoint in the published sgm single-file
layout (A1111 picks sd_xl_base.yaml for it from its keys) and diffusers' SDXL ControlNet "small" layout, both made
by tools/a1111_rig_models.py. The module switches the WebUI to the SDXL checkpoint once (POST /sdapi/v1/options,
which loads it before answering), sends every request with that checkpoint in `override_settings` as well, and
switches back to the checkpoint it found when it ends, so the other modules keep SD1.5.

What it proves: A1111 loads the file as SDXL (our SD1.5 ControlNet is refused as "made for sd1 but the checkpoint
is sdxl"); one SDXL ControlNet unit (its 10 residuals on the sgm UNet's 9 skip connections and middle block)
changes the image, in every control mode differently (the cond/uncond ledger of SDXL's batches); weight 0 gives
the image without units bit for bit; at a size that is a multiple of 8 but not of 64 (latents whose halvings do
not divide evenly), alone and with hires fix; a unit with the SD1.5 ControlNet fails naming its unit and field;
the unit carries on through A1111's refiner switch (the refiner: the base file under a second name, a hard link);
and afterwards the image without units is the one made first (the UNet is left as it was). Not covered here: a
refiner of another UNet layout (SDXL's own refiner; the units then stop at the switch) and --medvram-sdxl (a start
flag: `A1111_RIG_ARGS=--medvram-sdxl bash tools/a1111_rig.sh test -k sdxl` runs this module under it).

Requests are tiny (64 px, one step; the odd size 72x88) because the UNet is full size: on this project's CI
machine one SDXL step costs seconds (README, "Tests in a real A1111 WebUI").

Skipped unless `A1111_URL` names a running WebUI (see test_api_a1111.py); under `A1111_REQUIRE=1` missing files
are failures.
"""

from __future__ import annotations

import os

import pytest

if not os.environ.get("A1111_URL"):
    pytest.skip("A1111_URL is not set (no A1111 WebUI to test against)", allow_module_level=True)

from tests.a1111.probe import assert_as_before, live_objects, model_state, trim  # noqa: E402
from tests.a1111.test_api_a1111 import (  # noqa: E402
    assert_unit_error,
    generate,
    get,
    ok_json,
    post,
    same,
    txt2img_payload,
    unit,
)

SDXL_CHECKPOINT = "sdxl-base-random"
SDXL_REFINER = "sdxl-base-random-as-refiner"  # the same file under a second name (a hard link)
SDXL_CONTROLNET = "controlnet-canny-sdxl-1.0-small"
SD15_CONTROLNET = os.environ.get("A1111_CN_MODEL", "control_v11p_sd15_canny")
ODD = (72, 88)  # width, height: multiples of 8, not of 64
CONTROL_MODES = ["Balanced", "My prompt is more important", "ControlNet is more important"]


def _listed(names: list[str], stem: str, where: str) -> str:
    match = [n for n in names if n.split(" [")[0] == stem]
    if not match:
        pytest.skip(f"{stem} is not in {where} (made by tools/a1111_rig.sh): {names}")
    return match[0]


@pytest.fixture(scope="module")
def names() -> dict[str, str]:
    checkpoints = {c["model_name"]: c["title"] for c in ok_json(get("/sdapi/v1/sd-models"))}
    for stem in (SDXL_CHECKPOINT, SDXL_REFINER):
        if stem not in checkpoints:
            pytest.skip(f"{stem} is not in /sdapi/v1/sd-models (made by tools/a1111_rig.sh): {list(checkpoints)}")
    listed = ok_json(get("/controlnet/model_list"))["model_list"]
    return {"checkpoint": checkpoints[SDXL_CHECKPOINT], "refiner": checkpoints[SDXL_REFINER],
            "sdxl": _listed(listed, SDXL_CONTROLNET, "/controlnet/model_list"),
            "sd15": _listed(listed, SD15_CONTROLNET.split(" [")[0], "/controlnet/model_list")}


@pytest.fixture(scope="module")
def sdxl(names):
    """The WebUI on the SDXL checkpoint for this module; the checkpoint it had afterwards."""
    before = ok_json(get("/sdapi/v1/options"))["sd_model_checkpoint"]
    try:
        ok_json(post("/sdapi/v1/options", {"sd_model_checkpoint": names["checkpoint"]}))
        yield {**names, "before": before}
    finally:
        ok_json(post("/sdapi/v1/options", {"sd_model_checkpoint": before}))
        trim()  # the next modules get the SDXL weights' memory back (see the last test)


_CACHE: dict = {}


def xl(names, units=None, **overrides) -> dict:
    payload = txt2img_payload(units, **overrides)
    payload["override_settings"] = {"sd_model_checkpoint": names["checkpoint"]}
    payload["override_settings_restore_afterwards"] = False  # the fixture switches back once, at the end
    return payload


def xl_generate(key, names, units=None, **overrides):
    """One request per key per module; returns (images, info)."""
    if key not in _CACHE:
        _CACHE[key] = generate("txt2img", xl(names, units, **overrides))
    return _CACHE[key]


def odd(**overrides) -> dict:
    return dict(width=ODD[0], height=ODD[1], **overrides)


def hires(**overrides) -> dict:
    return odd(enable_hr=True, hr_scale=2, hr_upscaler="Latent", hr_second_pass_steps=1, denoising_strength=0.6,
               **overrides)


@pytest.fixture(scope="module")
def plain(sdxl):
    images, _ = xl_generate("plain", sdxl)
    return images[0]


@pytest.fixture(scope="module")
def state(plain):
    """The loaded SDXL model as the rig's probe sees it, after a generation without units."""
    return model_state()


def test_the_sdxl_checkpoint_generates(sdxl, plain, state):
    assert plain.shape == (64, 64, 3)
    assert plain.std() > 0  # not a flat (NaN-decoded) image
    assert ok_json(get("/sdapi/v1/options"))["sd_model_checkpoint"] == sdxl["checkpoint"]


def test_an_sd15_controlnet_is_refused_naming_unit_and_field(sdxl, plain):
    """Also the proof that our extension sees the loaded model as SDXL (A1111's is_sdxl)."""
    resp = post("/sdapi/v1/txt2img", xl(sdxl, [unit(sdxl["sdxl"]), unit(sdxl["sd15"])]))
    assert_unit_error(resp, 1, "model")
    assert "sdxl" in resp.text and "sd1" in resp.text, resp.text[:1500]


def test_an_sdxl_unit_changes_the_image(sdxl, plain):
    images, info = xl_generate("unit", sdxl, [unit(sdxl["sdxl"])])
    assert len(images) == 2, f"expected 1 image + 1 detected map, got {len(images)}"
    assert images[0].shape == plain.shape and not same(images[0], plain), "the SDXL unit changed nothing"
    infotext = (info.get("infotexts") or [""])[0]
    assert f"Model: {sdxl['sdxl']}" in infotext, infotext


def test_control_modes_differ(sdxl, plain):
    balanced = xl_generate("unit", sdxl, [unit(sdxl["sdxl"])])[0][0]
    others = [xl_generate(("mode", m), sdxl, [unit(sdxl["sdxl"], control_mode=m)])[0][0] for m in CONTROL_MODES[1:]]
    results = [plain, balanced, *others]
    labels = ["no unit", *CONTROL_MODES]
    for i in range(len(results)):
        for j in range(i + 1, len(results)):
            assert not same(results[i], results[j]), f"{labels[i]!r} and {labels[j]!r} gave the same image"


def test_weight_zero_is_the_image_without_units(sdxl, plain):
    images, _ = xl_generate("weight0", sdxl, [unit(sdxl["sdxl"], weight=0.0)])
    assert same(images[0], plain), "weight 0 changed the SDXL image"


def test_odd_size_unit(sdxl):
    """72x88: latents 9x11, halved to 5x6 and 3x3; A1111 resizes the skip it concatenates, our residuals keep
    the encoder's sizes."""
    none, _ = xl_generate("odd", sdxl, **odd())
    images, _ = xl_generate("odd_unit", sdxl, [unit(sdxl["sdxl"])], **odd())
    assert none[0].shape == images[0].shape == (ODD[1], ODD[0], 3)
    assert images[1].shape[:2] == (ODD[1], ODD[0])
    assert not same(none[0], images[0]), "the SDXL unit changed nothing at the odd size"
    zero, _ = xl_generate("odd_weight0", sdxl, [unit(sdxl["sdxl"], weight=0.0)], **odd())
    assert same(zero[0], none[0]), "weight 0 changed the odd-size image"


def test_odd_size_hires_fix(sdxl):
    none, _ = xl_generate("hires", sdxl, **hires())
    images, _ = xl_generate("hires_unit", sdxl, [unit(sdxl["sdxl"])], **hires())
    size = (2 * ODD[1], 2 * ODD[0])
    assert none[0].shape[:2] == images[0].shape[:2] == size
    assert len(images) == 3, f"expected 1 image + 2 detected maps (hires, low res), got {len(images)}"
    assert images[1].shape[:2] == size and images[2].shape[:2] == (ODD[1], ODD[0])
    assert not same(none[0], images[0]), "the SDXL unit changed nothing with hires fix"


def test_the_unet_is_left_as_it_was(sdxl, plain, state):
    """After the requests above (and a failed one): no hook, forward, attribute or weight changed on the loaded
    model (the probe), and the image without units is the first one. Before the refiner test, whose switch
    reloads the weights (in place, bumping their version counters)."""
    xl_generate("unit", sdxl, [unit(sdxl["sdxl"])])
    failed = post("/sdapi/v1/txt2img", xl(sdxl, [unit(sdxl["sdxl"], advanced_weighting=[1.0] * 3)]))
    assert_unit_error(failed, 0, "advanced_weighting")  # SDXL ControlNets have 10 residuals
    assert_as_before(state, "SDXL requests with units")
    again, _ = generate("txt2img", xl(sdxl))
    assert same(again[0], plain), "the SDXL image without units changed after requests with units"


def test_nothing_of_a_request_outlives_it(sdxl):
    """Our sessions and hooks go when the request ends, without waiting for Python's cycle collector (A1111
    leaves each `p` in reference cycles), and nothing left refers to the UNet's parameters: not a session kept on
    `p`, not the inputs in the traceback of a failed unit (`p.controlnet_error`; the requests above include two),
    or a checkpoint switch could not free them (10 GB for SDXL)."""
    generate("txt2img", xl(sdxl, [unit(sdxl["sdxl"], weight=0.5)]))
    found = live_objects()
    assert found["alive"]["_Session"] == found["alive"]["ControlHook"] == 0, found
    assert found["unet_bytes"] == 0, found


def test_the_refiner_switch_keeps_the_unit(sdxl):
    """A1111 swaps the refiner in inside the sampler (apply_refiner, by sampling steps here: 3 steps, switch at 0.5,
    so the third step runs on the refiner). The refiner holds the base weights under another name, so A1111 reloads
    them into the same UNet and a unit that keeps working through the switch gives exactly the image without a
    refiner; a unit that stopped at the switch would give the image whose unit ends before the third step (the
    denoiser calls see the fractions 0, 0, 1/3, see test_api_a1111's guidance test), which differs."""
    units = [unit(sdxl["sdxl"])]
    whole, _ = xl_generate("unit3", sdxl, units, steps=3)
    stopped, _ = xl_generate("unit3_end", sdxl, [unit(sdxl["sdxl"], guidance_end=0.2)], steps=3)
    assert not same(whole[0], stopped[0]), "the unit changed nothing on the third step: nothing to prove"
    payload = xl(sdxl, units, steps=3, refiner_checkpoint=sdxl["refiner"], refiner_switch_at=0.5)
    payload["override_settings"]["refiner_switch_by_sample_steps"] = True
    payload["override_settings_restore_afterwards"] = True  # and back to the base file afterwards
    images, info = generate("txt2img", payload)
    infotext = (info.get("infotexts") or [""])[0]
    assert f"Refiner: {SDXL_REFINER}" in infotext, f"A1111 did not switch to the refiner: {infotext}"
    assert same(images[0], whole[0]), "the unit did not carry on after the refiner switch"
    assert ok_json(get("/sdapi/v1/options"))["sd_model_checkpoint"] == sdxl["checkpoint"]
    plain, _ = xl_generate("plain", sdxl)
    again, _ = generate("txt2img", xl(sdxl))  # back on the base file: the image without units as before
    assert same(again[0], plain[0]), "the image without units changed after the refiner switch"


def test_switching_away_frees_the_sdxl_weights(sdxl):
    """Last: back on the checkpoint the module found, no tensor of the SDXL model is left: the live tensors outside
    the loaded model grow by less than 2 GiB (the SDXL UNet alone is 10.3 GB in fp32; before our sessions let go
    of the UNet's parameters, all of it stayed). The WebUI's RSS is printed, before and after malloc_trim: glibc
    keeps the freed pages until then."""
    loose = live_objects()["loose_bytes"]
    ok_json(post("/sdapi/v1/options", {"sd_model_checkpoint": sdxl["before"]}))
    after = live_objects()["loose_bytes"]
    rss = trim()
    print(f"loose tensors {loose / 2**30:.2f} -> {after / 2**30:.2f} GiB; WebUI RSS after switching back "
          f"{rss['rss_before'] / 2**30:.2f} GiB, after malloc_trim {rss['rss_after'] / 2**30:.2f} GiB")
    assert after - loose < 2 * 2**30, f"{(after - loose) / 2**30:.1f} GiB of tensors outlived the switch"
