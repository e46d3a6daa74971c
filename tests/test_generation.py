"""prepare_units: real units, real images, real model files, real preprocessors -> bound units or clear errors."""

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from lib_controlnet import InputError, ModelCache, NotFoundError
from lib_controlnet.generation import GenerationInputs, detected_map_images, prepare_units
from lib_controlnet.models.registry import ModelRegistry
from lib_controlnet.preprocessors import ResultCache, default_registry
from lib_controlnet.units.unit import Unit
from tests.tiny_models import SD_LIKE_UNET, controlnet_state_dict_from_unet, ldm_unet, save_state_dict


def b64png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ControlNet")
    unet = ldm_unet(SD_LIKE_UNET, seed=41)
    save_state_dict(controlnet_state_dict_from_unet(unet, seed=42), folder / "control_tiny_canny.safetensors")
    registry = ModelRegistry([folder])
    photo = np.ascontiguousarray(data.astronaut()[::4, ::4])  # 128x128 RGB
    return registry, photo


def prepare(env, units, **inputs):
    registry, _ = env
    args = dict(width=64, height=64)
    args.update(inputs)
    return prepare_units(
        [Unit.from_dict(u, index=i) for i, u in enumerate(units)],
        GenerationInputs(**args),
        models=registry,
        model_cache=ModelCache(),
        preprocessors=default_registry(),
        result_cache=ResultCache(),
    )


def test_canny_unit_becomes_a_hint_of_the_canny_map(env):
    registry, photo = env
    name = registry.list_names()[0]
    (p,) = prepare(env, [{"module": "canny", "model": name, "image": b64png(photo), "processor_res": 64,
                          "threshold_a": 50, "threshold_b": 120, "weight": 0.6, "control_mode": 2}])
    import cv2

    expected = cv2.Canny(cv2.resize(photo, (64, 64), interpolation=cv2.INTER_AREA), 50, 120)
    hint = p.bound.hint
    assert hint.shape == (1, 3, 64, 64)
    assert torch.equal(hint[0, 0], torch.from_numpy(expected).float() / 255)
    assert p.bound.weight == 0.6 and p.bound.control_mode.value == "ControlNet is more important"
    assert p.unit.threshold_a == 50 and p.unit.processor_res == 64
    assert len(p.detected_maps) == 1 and p.detected_maps[0].shape[:2] == (64, 64)


def test_disabled_units_are_skipped_but_indices_kept(env):
    registry, photo = env
    name = registry.list_names()[0]
    prepared = prepare(env, [{"enabled": False, "module": "canny", "model": name},
                             {"module": "invert", "model": name, "image": b64png(photo), "save_detected_map": False}])
    assert [p.index for p in prepared] == [1] and prepared[0].detected_maps == []


@pytest.mark.parametrize(
    "unit, field, error",
    [
        ({"module": "canny", "model": "None", "image": "IMG"}, "model", InputError),
        ({"module": "canny", "model": "no_such_model", "image": "IMG"}, "model", NotFoundError),
        ({"module": "canny", "model": "control_tiny_canny"}, "image", InputError),
        ({"module": "canny", "model": "control_tiny_canny", "image": "not base64!"}, "image", InputError),
        ({"module": "canny", "model": "control_tiny_canny", "image": "IMG", "threshold_a": 999}, "threshold_a",
         InputError),
        ({"module": "canny", "model": "control_tiny_canny", "image": "IMG", "advanced_weighting": [1.0] * 5},
         "advanced_weighting", InputError),
    ],
)
def test_errors_name_the_unit_and_the_field(env, unit, field, error):
    _, photo = env
    unit = {k: (b64png(photo) if v == "IMG" else v) for k, v in unit.items()}
    with pytest.raises(error) as e:
        prepare(env, [{"enabled": False}, unit])
    assert e.value.unit == 1 and e.value.field == field, str(e.value)


def test_img2img_unit_without_image_reads_the_init_image_and_hires_gets_its_own_hint(env):
    registry, photo = env
    (p,) = prepare(env, [{"module": "invert", "model": "control_tiny_canny", "pixel_perfect": True,
                          "resize_mode": "Just Resize"}], init_image=photo, hires_size=(96, 96))
    assert p.bound.hint.shape == (1, 3, 64, 64) and p.bound.hint_hires.shape == (1, 3, 96, 96)
    inverted = 1 - torch.from_numpy(photo).permute(2, 0, 1).float() / 255
    small = torch.nn.functional.interpolate(inverted[None], size=(64, 64), mode="area")
    assert (p.bound.hint - small).abs().mean() < 0.02  # the same picture, resized by the map resizer
    # invert has no resolution for pixel perfect to compute: the infotext keeps the value sent
    assert p.unit.processor_res == -1


def test_inpaint_unit_takes_the_img2img_mask_and_marks_it_minus_one(env):
    _, photo = env
    mask = np.zeros(photo.shape[:2], np.uint8)
    mask[32:96, 32:96] = 255
    (p,) = prepare(env, [{"module": "inpaint_only", "model": "control_tiny_canny", "resize_mode": "Just Resize"}],
                   width=128, height=128, init_image=photo, inpaint_mask=mask)
    hint = p.bound.hint[0]
    assert (hint[:, 40:88, 40:88] == -1).all()
    assert (hint[:, :24, :24] >= 0).all()


# --- img2img: a unit without its own image fits the init image as A1111 fitted it (issue 17) ----------------
def _wide(env):
    _, photo = env
    return np.ascontiguousarray(np.concatenate([photo, photo[:, :64]], axis=1))  # 128x192: another aspect


@pytest.mark.parametrize("host_mode, expected_mode", [
    ("Just Resize", "Just Resize"), ("Crop and Resize", "Crop and Resize"), ("Resize and Fill", "Resize and Fill")])
def test_a_unit_reading_the_init_image_fits_it_by_the_hosts_img2img_resize_mode(env, host_mode, expected_mode):
    from lib_controlnet.enums import ResizeMode
    from lib_controlnet.units.hint_size import fit_detected_map

    wide = _wide(env)
    # the unit says Crop and Resize (its default); the reference ignores it for the init image and uses A1111's
    # p.resize_mode, so the control lines up with the latent A1111 made from the same image
    (p,) = prepare(env, [{"module": "none", "model": "control_tiny_canny", "resize_mode": "Crop and Resize"}],
                   init_image=wide, init_resize_mode=ResizeMode.parse(host_mode))
    expected = fit_detected_map(wide, expected_mode, 64, 64)
    assert torch.equal(p.bound.hint[0], torch.from_numpy(expected).permute(2, 0, 1).float() / 255)
    (shown,) = detected_map_images([p], GenerationInputs(width=64, height=64))
    assert np.array_equal(shown, expected)  # the map returned is the one used
    assert p.unit.resize_mode.value == "Crop and Resize"  # infotext: the unit as sent (the reference's too)


def test_a_unit_with_its_own_image_keeps_its_resize_mode_in_img2img(env):
    from lib_controlnet.enums import ResizeMode
    from lib_controlnet.units.hint_size import fit_detected_map

    wide = _wide(env)
    (p,) = prepare(env, [{"module": "none", "model": "control_tiny_canny", "resize_mode": "Crop and Resize",
                          "image": b64png(wide)}], init_image=wide, init_resize_mode=ResizeMode.RESIZE)
    expected = fit_detected_map(wide, "Crop and Resize", 64, 64)
    assert torch.equal(p.bound.hint[0], torch.from_numpy(expected).permute(2, 0, 1).float() / 255)


def test_pixel_perfect_on_the_init_image_uses_the_hosts_resize_mode(env):
    from lib_controlnet.enums import ResizeMode

    wide = _wide(env)  # 128x192 into 256x256: fill -> 128 * 256/192 = 171, the other modes -> 256
    unit = {"module": "canny", "model": "control_tiny_canny", "resize_mode": "Crop and Resize", "pixel_perfect": True}
    (p,) = prepare(env, [unit], width=256, height=256, init_image=wide, init_resize_mode=ResizeMode.OUTER_FIT)
    assert p.unit.processor_res == 171


@pytest.mark.parametrize("value, expected", [(0, "Just Resize"), (1, "Crop and Resize"), (2, "Resize and Fill"),
                                             (3, "Just Resize"), (7, "Just Resize"), ("Crop and resize",
                                                                                      "Crop and Resize")])
def test_a1111_img2img_resize_modes(value, expected):
    from lib_controlnet.enums import ResizeMode

    # A1111's img2img radio: Just resize, Crop and resize, Resize and fill, Just resize (latent upscale)
    assert ResizeMode.from_img2img(value).value == expected


def test_the_init_image_is_read_as_the_reference_reads_it():
    from lib_controlnet.units.image_input import init_image_array

    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = [[0, 64, 128, 255]] * 4
    # the reference's HWC3: composited over white (PIL's convert("RGB") would drop the alpha: 200, 0, 0)
    got = init_image_array(Image.fromarray(rgba, "RGBA"))
    alpha = rgba[..., 3:4].astype(np.float32) / 255
    assert np.array_equal(got, (rgba[..., :3] * alpha + 255 * (1 - alpha)).clip(0, 255).astype(np.uint8))
    grey = np.arange(16, dtype=np.uint8).reshape(4, 4)
    assert np.array_equal(init_image_array(Image.fromarray(grey, "L")), np.repeat(grey[..., None], 3, axis=2))
