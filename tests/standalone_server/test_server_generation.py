"""txt2img and img2img through the real socket: units, control modes, start/end, detected maps, infotext, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from standalone import DEMO_NOTICE
from standalone.server.notice import NOTICE_HEADER
from tests.standalone_server.server_helpers import (
    CONTROLNET,
    body,
    decode,
    gradient,
    info,
    ok,
    pixels,
    png_b64,
    square,
    unit,
)


def differ(a: np.ndarray, b: np.ndarray) -> bool:
    return not np.array_equal(a, b)


@pytest.fixture(scope="module")
def plain(client):
    """The reference image: no unit, seed 1234."""
    return pixels(ok(client.post("/sdapi/v1/txt2img", json=body()))["images"][0])


def test_txt2img_without_units_has_a1111_shape_and_says_demo(client):
    response = client.post("/sdapi/v1/txt2img", json=body())
    data = ok(response)
    assert set(data) >= {"images", "parameters", "info"}
    assert len(data["images"]) == 1
    image = decode(data["images"][0])
    assert image.size == (64, 64) and image.format == "PNG"
    details = info(data)
    assert details["seed"] == 1234 and details["all_seeds"] == [1234] and details["steps"] == 3
    assert details["sampler_name"] == "Euler" and details["width"] == 64
    assert data["parameters"]["prompt"] == "a cat" and data["parameters"]["steps"] == 3
    # the demo model says so: header, warnings, info and the PNG's own parameters text
    assert response.headers[NOTICE_HEADER] == DEMO_NOTICE
    assert DEMO_NOTICE in data["warnings"] and details["is_demo_model"] is True
    assert "Demo model: " in image.info["parameters"]
    assert "ControlNet" not in image.info["parameters"]


def test_same_seed_same_image_other_seed_other_image(client, plain):
    again = pixels(ok(client.post("/sdapi/v1/txt2img", json=body()))["images"][0])
    other = pixels(ok(client.post("/sdapi/v1/txt2img", json=body(seed=4321)))["images"][0])
    assert np.array_equal(plain, again)
    assert differ(plain, other)


def test_one_unit_changes_the_image_appends_its_map_and_writes_infotext(client, plain):
    data = ok(client.post("/sdapi/v1/txt2img", json=body(unit())))
    assert len(data["images"]) == 2  # the image, then the unit's detected map
    generated, detected = decode(data["images"][0]), pixels(data["images"][1])
    assert differ(np.asarray(generated.convert("RGB")), plain)
    assert detected.shape == (64, 64, 3) and set(np.unique(detected)) <= {0, 255} and detected.any()
    text = generated.info["parameters"]
    assert 'ControlNet 0: "Module: canny, Model: ' + CONTROLNET in text
    assert "Control Mode: Balanced" in text and "ControlNet 1" not in text
    assert info(data)["extra_generation_params"]["ControlNet 0"].startswith("Module: canny")


def test_three_units_append_three_maps_in_unit_order(client):
    units = [unit(), unit(module="invert", image=png_b64(gradient())), unit(module="threshold", weight=0.5)]
    data = ok(client.post("/sdapi/v1/txt2img", json=body(*units)))
    assert len(data["images"]) == 1 + 3
    text = decode(data["images"][0]).info["parameters"]
    for i, module in enumerate(("canny", "invert", "threshold")):
        assert f'ControlNet {i}: "Module: {module}, ' in text
    inverted = pixels(data["images"][2])
    assert np.array_equal(inverted, 255 - gradient())  # invert's map of the gradient, at the hint size


def test_weight_zero_gives_the_same_image_as_no_unit(client, plain):
    data = ok(client.post("/sdapi/v1/txt2img", json=body(unit(weight=0))))
    assert np.array_equal(pixels(data["images"][0]), plain)


def test_each_control_mode_gives_its_own_image(client, plain):
    images = {}
    for mode in ("Balanced", "My prompt is more important", "ControlNet is more important"):
        data = ok(client.post("/sdapi/v1/txt2img", json=body(unit(control_mode=mode))))
        assert f"Control Mode: {mode}" in decode(data["images"][0]).info["parameters"]
        images[mode] = pixels(data["images"][0])
    arrays = [plain, *images.values()]
    assert all(differ(a, b) for i, a in enumerate(arrays) for b in arrays[i + 1 :])
    legacy = ok(client.post("/sdapi/v1/txt2img", json=body(unit(control_mode=2))))  # the reference's int form
    assert np.array_equal(pixels(legacy["images"][0]), images["ControlNet is more important"])


def test_guidance_start_and_end_limit_the_unit_to_its_steps(client, plain):
    def run(start, end):
        data = ok(client.post("/sdapi/v1/txt2img", json=body(unit(guidance_start=start, guidance_end=end), steps=4)))
        return pixels(data["images"][0]), decode(data["images"][0]).info["parameters"]

    plain4 = pixels(ok(client.post("/sdapi/v1/txt2img", json=body(steps=4)))["images"][0])
    full, _ = run(0.0, 1.0)
    late, text = run(0.5, 1.0)
    again, _ = run(0.5, 1.0)
    assert "Guidance Start: 0.5, Guidance End: 1.0" in text
    assert differ(late, full) and differ(late, plain4) and np.array_equal(late, again)


def test_save_detected_map_false_and_no_detectmap_setting_append_nothing(client):
    data = ok(client.post("/sdapi/v1/txt2img", json=body(unit(save_detected_map=False), unit())))
    assert len(data["images"]) == 1 + 1
    data = ok(client.post("/sdapi/v1/txt2img", json=body(
        unit(), override_settings={"control_net_no_detectmap": True})))
    assert len(data["images"]) == 1
    assert "ControlNet 0" in decode(data["images"][0]).info["parameters"]  # the unit still ran


def test_batches_return_every_image_then_the_maps(client):
    data = ok(client.post("/sdapi/v1/txt2img", json=body(unit(), batch_size=2, n_iter=2, steps=2)))
    assert len(data["images"]) == 4 + 1
    assert info(data)["all_seeds"] == [1234, 1235, 1236, 1237]


def test_legacy_aliases_and_key_case_are_accepted(client):
    legacy = {"module": "canny", "model": CONTROLNET, "input_image": png_b64(square()), "guidance": 0.5,
              "lowvram": False}  # no "enabled": a unit naming a module is meant to run
    payload = body(steps=2)
    payload["alwayson_scripts"] = {"ControlNet": {"args": [legacy]}}
    data = ok(client.post("/sdapi/v1/txt2img", json=payload))
    assert len(data["images"]) == 2
    assert "Guidance End: 0.5" in decode(data["images"][0]).info["parameters"]
    assert any("'guidance' is a deprecated alias" in w for w in data["warnings"])


def test_disabled_and_null_units_keep_positions(client):
    payload = body(None, {"enabled": False, "module": "canny"}, unit(), steps=2)
    data = ok(client.post("/sdapi/v1/txt2img", json=payload))
    assert len(data["images"]) == 2
    parameters = decode(data["images"][0]).info["parameters"]
    assert "ControlNet 2" in parameters and "ControlNet 0" not in parameters  # the unit's position: its tab


# --- img2img ---------------------------------------------------------------------------------------------------
def img2img(*units, **fields) -> dict:
    return body(*units, init_images=[png_b64(gradient())], denoising_strength=0.6, **fields)


def test_img2img_without_units(client):
    data = ok(client.post("/sdapi/v1/img2img", json=img2img()))
    assert len(data["images"]) == 1
    assert info(data)["denoising_strength"] == 0.6
    assert data["parameters"]["init_images"] is None  # not echoed back, as A1111 without include_init_images
    assert "Denoising strength: 0.6" in decode(data["images"][0]).info["parameters"]


def test_img2img_unit_without_image_reads_the_init_image(client):
    data = ok(client.post("/sdapi/v1/img2img", json=img2img(alwayson_scripts={"controlnet": {"args": [
        {"enabled": True, "module": "invert", "model": CONTROLNET}]}})))
    assert len(data["images"]) == 2
    assert np.array_equal(pixels(data["images"][1]), 255 - gradient())


def test_img2img_init_image_control_is_fitted_as_the_init_image_and_over_white(client):
    # 64x96 into 64x64 with a Crop and Resize unit: this host stretches the init image (A1111's resize mode 0),
    # so the control is stretched too (the reference's rule), else it would not line up with the latent
    wide = np.zeros((64, 96, 4), np.uint8)
    wide[..., :3] = np.tile(np.linspace(0, 255, 96, dtype=np.uint8)[None, :, None], (64, 1, 3))
    wide[..., 3] = 255
    wide[:, :16, 3] = 0  # a transparent band: white under it, as A1111 flattens the init image
    unit_ = {"enabled": True, "module": "none", "model": CONTROLNET, "resize_mode": "Crop and Resize"}
    data = ok(client.post("/sdapi/v1/img2img", json=body(unit_, init_images=[png_b64(wide)],
                                                         denoising_strength=0.6)))
    from annotator.util import hwc3
    from lib_controlnet.units.hint_size import fit_detected_map

    assert np.array_equal(pixels(data["images"][1]), fit_detected_map(hwc3(wide), "Just Resize", 64, 64))


def test_img2img_three_units_with_an_inpaint_mask(client):
    mask = np.zeros((64, 64, 3), np.uint8)
    mask[:, 32:] = 255
    units = [unit(), {"enabled": True, "module": "inpaint", "model": CONTROLNET},
             unit(module="threshold", image=png_b64(square(value=200)))]
    plain = ok(client.post("/sdapi/v1/img2img", json=img2img(mask=png_b64(mask), mask_blur=0, inpainting_fill=1,
                                                               inpaint_full_res=False)))
    data = ok(client.post("/sdapi/v1/img2img", json=img2img(*units, mask=png_b64(mask), mask_blur=0,
                                                              inpainting_fill=1, inpaint_full_res=False)))
    assert len(data["images"]) == 1 + 3
    assert data["warnings"] == [DEMO_NOTICE]
    result, baseline = pixels(data["images"][0]), pixels(plain["images"][0])
    # outside the mask the init image is put back whatever the units did; inside, the units changed it
    assert np.array_equal(result[:, :28], gradient()[:, :28])
    assert differ(result[:, 36:], baseline[:, 36:])
    text = decode(data["images"][0]).info["parameters"]
    assert all(f"ControlNet {i}: " in text for i in range(3))


def test_img2img_notes_what_it_ignores(client):
    mask = png_b64(np.full((64, 64, 3), 255, np.uint8))
    data = ok(client.post("/sdapi/v1/img2img", json=img2img(mask=mask, restore_faces=True, steps=2)))
    notes = " ".join(data["warnings"])
    assert "face restoration" in notes and "Only masked" in notes and "inpainting_fill" in notes
