"""Base64 image decoding: what is accepted, and what is refused before any pixel is decoded."""

import base64
import io

import numpy as np
import pytest
from api_test_helpers import to_b64
from PIL import Image

from lib_controlnet.api.images import MAX_PIXELS, decode_image, decode_mask, encode_png
from lib_controlnet.errors import InputError


def test_png_jpeg_and_data_uri(astronaut_rgb, grace_hopper_jpeg_b64):
    assert np.array_equal(decode_image(to_b64(astronaut_rgb), "f"), astronaut_rgb)
    assert np.array_equal(decode_image("data:image/png;base64," + to_b64(astronaut_rgb), "f"), astronaut_rgb)
    text = to_b64(astronaut_rgb)
    wrapped = "\n".join(text[i:i + 76] for i in range(0, len(text), 76))  # MIME-style line breaks are fine
    assert np.array_equal(decode_image(wrapped, "f"), astronaut_rgb)
    with pytest.raises(InputError, match="Invalid encoded image"):
        decode_image(text[:2000], "f")  # a truncated PNG
    assert decode_image(grace_hopper_jpeg_b64, "f").shape == (600, 512, 3)


def test_transparency_is_composited_over_white_and_grey_is_replicated(astronaut_rgb):
    rgba = np.concatenate([astronaut_rgb, np.zeros((512, 512, 1), np.uint8)], axis=2)
    rgba[:, 256:, 3] = 255
    out = decode_image(to_b64(rgba), "f")
    assert (out[:, :256] == 255).all() and np.array_equal(out[:, 256:], astronaut_rgb[:, 256:])
    grey = decode_image(to_b64(astronaut_rgb[:, :, 1]), "f")
    assert grey.shape == (512, 512, 3) and np.array_equal(grey[:, :, 2], astronaut_rgb[:, :, 1])


def test_masks_from_grey_rgb_and_rgba(astronaut_rgb):
    assert np.array_equal(decode_mask(to_b64(astronaut_rgb[:, :, 0]), "m"), astronaut_rgb[:, :, 0])
    assert np.array_equal(decode_mask(to_b64(astronaut_rgb), "m"), astronaut_rgb[:, :, 0])


@pytest.mark.parametrize("text", ["", "   ", None, 12, "file:///etc/passwd", "ftp://x/y.png", "data:image/png,abc",
                                  "////", base64.b64encode(b"GIF89a" + bytes(40)).decode()])
def test_refused_inputs_name_the_field(text):
    with pytest.raises(InputError) as info:
        decode_image(text, "controlnet_input_images[3]")
    assert info.value.field == "controlnet_input_images[3]"


def test_formats_outside_the_allowed_list_are_refused(astronaut_rgb):
    buffer = io.BytesIO()
    Image.fromarray(astronaut_rgb).save(buffer, format="ICO")
    with pytest.raises(InputError, match="Invalid encoded image"):
        decode_image(base64.b64encode(buffer.getvalue()).decode(), "f")


def test_oversized_images_are_refused_from_the_header():
    side = int(MAX_PIXELS**0.5) + 64
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG")  # tiny file, huge canvas
    assert len(buffer.getvalue()) < 2_000_000
    with pytest.raises(InputError, match="larger than"):
        decode_image(base64.b64encode(buffer.getvalue()).decode(), "f")


def test_encode_png_round_trips(astronaut_rgb):
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(encode_png(astronaut_rgb))))),
                          astronaut_rgb)
