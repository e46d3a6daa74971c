"""Decoding unit images and masks in every accepted shape, and refusing everything else by unit and field."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from unit_test_helpers import astronaut, encode

from lib_controlnet.errors import InputError
from lib_controlnet.units import image_input
from lib_controlnet.units.image_input import control_input, decode_images, decode_region_mask, decode_unit_images
from lib_controlnet.units.unit import Unit


@pytest.fixture(scope="module")
def photo():
    return astronaut()[100:260, 150:350].copy()  # 160x200, not square: catches swapped axes


@pytest.fixture(scope="module")
def mask(photo):
    m = np.zeros(photo.shape[:2], np.uint8)
    m[40:120, 60:170] = 255
    return m


def test_base64_png_round_trips_exactly(photo):
    [rgba] = decode_images(encode(photo))
    assert rgba.shape == (160, 200, 4) and rgba.dtype == np.uint8
    assert np.array_equal(rgba[:, :, :3], photo)
    assert not rgba[:, :, 3].any()  # no mask: alpha 0


def test_data_uri_prefix_whitespace_and_missing_padding_are_accepted(photo):
    text = encode(photo)
    wrapped = "data:image/png;base64," + "\n".join(text[i:i + 76] for i in range(0, len(text), 76))
    assert np.array_equal(decode_images(wrapped)[0][:, :, :3], photo)
    small = encode(photo[:3, :5])
    assert np.array_equal(decode_images(small.rstrip("="))[0][:, :, :3], photo[:3, :5])


def test_jpeg_decodes_close_to_the_photo(photo):
    [rgba] = decode_images(encode(photo, "JPEG", quality=95))
    assert np.abs(rgba[:, :, :3].astype(int) - photo).mean() < 3


@pytest.mark.parametrize("shape", ["HxW", "HxWx1", "HxWx3"])
def test_arrays_grey_and_colour(photo, shape):
    grey = photo[:, :, 1]
    array = {"HxW": grey, "HxWx1": grey[:, :, None], "HxWx3": photo}[shape]
    [rgba] = decode_images(array)
    expected = photo if shape == "HxWx3" else np.repeat(grey[:, :, None], 3, axis=2)
    assert np.array_equal(rgba[:, :, :3], expected)


def test_rgba_image_is_composited_over_white(photo):
    alpha = np.linspace(0, 255, photo.shape[1]).astype(np.uint8)[None, :].repeat(photo.shape[0], 0)
    rgba_in = np.dstack([photo, alpha])
    a = alpha[:, :, None].astype(np.float64) / 255
    expected = np.clip(photo * a + 255 * (1 - a), 0, 255).astype(np.uint8)
    for value in (rgba_in, encode(rgba_in)):
        [out] = decode_images(value)
        assert np.abs(out[:, :, :3].astype(int) - expected).max() <= 1
        assert not out[:, :, 3].any()  # an image's own alpha is not a mask


@pytest.mark.parametrize("form", ["separate", "mask_image alias", "dict", "list", "tuple", "dict+unit mask"])
def test_image_with_mask_in_every_form(photo, mask, form):
    img, msk = encode(photo), encode(mask)
    payload = {
        "separate": {"image": img, "mask": msk},
        "mask_image alias": {"image": img, "mask_image": msk},
        "dict": {"image": {"image": img, "mask": msk}},
        "list": {"image": [img, msk]},
        "tuple": {"image": (photo, mask)},
        "dict+unit mask": {"image": {"image": img}, "mask": msk},
    }[form]
    [rgba] = decode_unit_images(Unit.from_dict(payload))
    assert np.array_equal(rgba[:, :, :3], photo)
    assert np.array_equal(rgba[:, :, 3], mask)


def test_multi_input_list_of_dicts(photo, mask):
    other = astronaut()[:64, :64]
    out = decode_images([{"image": encode(photo), "mask": encode(mask)}, {"image": other, "mask": None},
                         {"image": encode(other)}])
    assert [o.shape for o in out] == [(160, 200, 4), (64, 64, 4), (64, 64, 4)]
    assert np.array_equal(out[0][:, :, 3], mask) and not out[1][:, :, 3].any()
    assert np.array_equal(out[2][:, :, :3], other)


def test_mask_shapes_colour_and_transparent_layers(photo, mask):
    colour_mask = np.dstack([mask, np.zeros_like(mask), 255 - mask])  # the reference takes the first channel
    assert np.array_equal(decode_images(photo, colour_mask)[0][:, :, 3], mask)
    opaque = np.dstack([mask, mask, mask, np.full_like(mask, 255)])
    assert np.array_equal(decode_images(photo, opaque)[0][:, :, 3], mask)
    # strokes drawn on a transparent layer: the alpha is the mask (composited over white it would be all 255)
    layer = np.dstack([np.full_like(mask, 255)] * 3 + [mask])
    assert np.array_equal(decode_images(photo, encode(layer))[0][:, :, 3], mask)
    assert np.array_equal(decode_images(photo, mask[:, :, None])[0][:, :, 3], mask)


def test_none_means_no_image():
    assert decode_images(None) is None
    assert decode_unit_images(Unit()) is None


# --- errors: each names the unit and the field ----------------------------------------------------------
def _bad_cases(photo, mask):
    img, msk = encode(photo), encode(mask)
    return [
        ({"image": "not base64 at all!"}, "image"),
        ({"image": base64.b64encode(b"just some text, not an image").decode()}, "image"),
        ({"image": ""}, "image"),
        ({"image": "data:image/png;base64"}, "image"),
        ({"image": img, "mask": "%%%"}, "mask"),
        ({"image": None, "mask": msk}, "mask"),
        ({"image": {"mask": msk}}, "image"),
        ({"image": {"image": None, "mask": msk}}, "image"),
        ({"image": {"image": img, "mask": msk, "extra": 1}}, "image"),
        ({"image": {"image": img, "mask": msk}, "mask": msk}, "mask"),
        ({"image": [img]}, "image"),
        ({"image": [img, msk, msk]}, "image"),
        ({"image": []}, "image"),
        ({"image": [None, msk]}, "image[0]"),
        ({"image": [img, msk], "mask": msk}, "mask"),
        ({"image": [{"image": img}, img]}, "image[1]"),
        ({"image": [{"image": img}, {"mask": msk}]}, "image[1]"),
        ({"image": [{"image": img}, {"image": "@@"}]}, "image[1]"),
        ({"image": [{"image": img, "mask": encode(mask[:10])}]}, "image[0].mask"),
        ({"image": [{"image": img}], "mask": msk}, "mask"),
        ({"image": img, "mask": encode(mask[:, :100])}, "mask"),
        ({"image": {"image": img, "mask": encode(mask.T.copy())}}, "image.mask"),
        ({"image": photo.astype(np.float32)}, "image"),
        ({"image": photo[:, :, :2]}, "image"),
        ({"image": np.zeros((0, 5, 3), np.uint8)}, "image"),
        ({"image": photo[None]}, "image"),
    ]


def test_error_matrix_names_unit_and_field(photo, mask):
    for payload, field in _bad_cases(photo, mask):
        unit = Unit.from_dict(payload)
        with pytest.raises(InputError) as info:
            decode_unit_images(unit, index=5)
        assert (info.value.unit, info.value.field) == (5, field), payload.keys()
        assert info.value.status_code == 422


def test_shape_mismatch_message_is_the_references(photo, mask):
    with pytest.raises(InputError, match=r"image shape \(160, 200\) not aligned with mask shape \(160, 100\)"):
        decode_images(photo, mask[:, :100], unit=0)


# --- never a file, never a URL -------------------------------------------------------------------------
def test_a_path_string_is_never_opened(tmp_path, photo):
    path = tmp_path / "secret.png"
    path.write_bytes(base64.b64decode(encode(photo)))
    for text in (str(path), path.as_uri(), "file://" + str(path), "http://127.0.0.1:1/x.png",
                 "https://example.com/a.png"):
        with pytest.raises(InputError) as info:
            decode_images(text, unit=1)
        assert (info.value.unit, info.value.field) == (1, "image")
    # trusted batch callers may read files explicitly; URLs stay refused even then
    assert np.array_equal(decode_images(str(path), allow_paths=True)[0][:, :, :3], photo)
    with pytest.raises(InputError):
        decode_images("file://" + str(path), allow_paths=True)


def test_huge_images_are_refused_before_decoding(monkeypatch, photo):
    monkeypatch.setattr(image_input, "MAX_PIXELS", 100 * 100)
    with pytest.raises(InputError, match="larger than"):
        decode_images(encode(photo), unit=0)
    with pytest.raises(InputError, match="larger than"):
        decode_images(photo, unit=0)


def test_non_raster_formats_are_refused():
    eps = base64.b64encode(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n").decode()
    with pytest.raises(InputError, match="Invalid encoded image"):
        decode_images(eps, unit=0)


def test_palette_16bit_and_grey_alpha_pngs(photo):
    from PIL import Image

    pal = Image.fromarray(photo).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    [out] = decode_images(image_input.read_array(pal, field="image"))
    assert np.array_equal(out[:, :, :3], np.asarray(pal.convert("RGB")))
    deep = (photo[:, :, 0].astype(np.uint16) * 257)
    [out16] = decode_images(Image.fromarray(deep, mode="I;16"))
    assert np.array_equal(out16[:, :, 0], photo[:, :, 0])
    dark = Image.fromarray((photo[:, :, 0] // 2).astype(np.uint16), mode="I;16")  # 16-bit, all values < 256
    [out_dark] = decode_images(dark)
    assert out_dark[:, :, 0].max() <= 1  # 16-bit scale, not read as 8-bit values


# --- effective region mask and what the preprocessor sees ------------------------------------------------
def test_region_mask_decodes_to_unit_floats(mask):
    region = decode_region_mask(encode(mask), unit=0)
    assert region.dtype == np.float32 and region.shape == mask.shape
    assert set(np.unique(region)) == {0.0, 1.0}
    assert np.array_equal(region == 1.0, mask == 255)
    assert decode_region_mask(None) is None
    with pytest.raises(InputError) as info:
        decode_region_mask("!!", unit=2)
    assert (info.value.unit, info.value.field) == (2, "effective_region_mask")


def test_control_input_canvas_scribble_rule(photo, mask):
    rgba = np.dstack([photo, mask])
    assert control_input(rgba, keep_rgba=True) is rgba
    scribble = control_input(rgba, keep_rgba=False)  # a drawn mask becomes the input
    assert np.array_equal(scribble, np.repeat(mask[:, :, None], 3, axis=2))
    assert np.array_equal(control_input(rgba, keep_rgba=False, ignore_mask=True), photo)
    for nearly in (3, 252):  # (almost) empty or full masks are no drawing
        flat = np.dstack([photo, np.full_like(mask, nearly)])
        assert np.array_equal(control_input(flat, keep_rgba=False), photo)
