"""inpaint maps, user sketches (canvas scribble mode and scribble_sketch) and seg_passthrough."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from annotator.canny import canny
from annotator.flat_segmentation import flat_segmentation
from annotator.inpaint import inpaint_display, inpaint_map
from annotator.sketch import canvas_input, has_canvas_strokes, scribble_sketch
from lib_controlnet.errors import InputError


def _with_alpha(rgb, alpha):
    return np.concatenate([rgb, alpha[:, :, None]], axis=2)


def test_inpaint_map_is_image_plus_mask_and_display_half_transparent(astronaut_rgb):
    mask = np.zeros((512, 512), np.uint8)
    mask[100:300, 150:350] = 255
    rgba = _with_alpha(astronaut_rgb, mask)
    assert inpaint_map(rgba) is rgba
    shown = inpaint_display(rgba)
    assert np.array_equal(shown[:, :, :3], astronaut_rgb)
    assert (shown[100:300, 150:350, 3] == 128).all() and (shown[:100, :, 3] == 255).all()
    assert (rgba[:, :, 3] == mask).all()  # the map itself is untouched
    with pytest.raises(InputError) as info:
        inpaint_map(astronaut_rgb)
    assert info.value.field == "mask"


def test_canvas_rule_takes_alpha_strokes_only_when_alpha_holds_strokes(astronaut_rgb):
    strokes = np.zeros((512, 512), np.uint8)
    cv2.line(strokes, (50, 50), (400, 300), 255, 9)
    with_strokes = _with_alpha(astronaut_rgb, strokes)
    assert has_canvas_strokes(with_strokes)
    assert np.array_equal(canvas_input(with_strokes), np.repeat(strokes[:, :, None], 3, axis=2))
    assert np.array_equal(canvas_input(with_strokes, ignore_mask=True), astronaut_rgb)
    for flat_alpha in (3, 252):  # (almost) empty or (almost) full alpha: the RGB is the input
        rgba = _with_alpha(astronaut_rgb, np.full((512, 512), flat_alpha, np.uint8))
        assert not has_canvas_strokes(rgba)
        assert np.array_equal(canvas_input(rgba), astronaut_rgb)


def _pen_drawing(photo):
    """A 'drawing' made from a real photo: its Canny edges, dilated, as dark pen on white paper."""
    edges = canny(photo, 512, 100, 200)[:, :, 0]
    pen = cv2.dilate(edges, np.ones((2, 2), np.uint8)) > 0
    paper = np.full(photo.shape, 255, np.uint8)
    paper[pen] = 30
    return paper, pen


def test_scribble_sketch_turns_dark_pen_on_white_into_white_strokes(astronaut_rgb):
    drawing, pen = _pen_drawing(astronaut_rgb)
    out = scribble_sketch(drawing, 512, 64)
    assert out.shape == (512, 512, 3) and set(np.unique(out)) == {0, 255}
    assert np.array_equal(out[:, :, 0] > 0, pen)
    # White chalk on black gives the same strokes.
    assert np.array_equal(scribble_sketch(255 - drawing, 512, 64), out)


def test_scribble_sketch_threshold_drops_faint_strokes(astronaut_rgb):
    drawing, pen = _pen_drawing(astronaut_rgb)
    faint = drawing.copy()
    faint[:, 256:][pen[:, 256:]] = 170  # the right half drawn with a light pencil (85 below the paper)
    low, high = scribble_sketch(faint, 512, 40), scribble_sketch(faint, 512, 120)
    assert np.array_equal(low[:, :, 0] > 0, pen)
    assert np.array_equal(high[:, :, 0] > 0, pen & (np.arange(512) < 256)[None, :])


def test_scribble_sketch_reads_canvas_strokes_from_alpha(astronaut_rgb):
    strokes = np.zeros((512, 512), np.uint8)
    cv2.circle(strokes, (256, 256), 100, 255, 5)
    out = scribble_sketch(_with_alpha(astronaut_rgb, strokes), 512, 64)
    assert np.array_equal(out[:, :, 0] > 0, strokes > 64)
    assert scribble_sketch(_with_alpha(astronaut_rgb, strokes), 256, 64).shape == (256, 256, 3)


PALETTE = np.array([[120, 120, 120], [180, 120, 120], [6, 230, 230], [80, 50, 50], [4, 200, 3],
                    [120, 120, 80], [140, 140, 140], [204, 5, 255]], np.uint8)  # ADE20K's first classes


def _segmentation_of(photo):
    """A flat-colour map of a real photo: each pixel labelled by its nearest palette colour after a blur."""
    smooth = cv2.GaussianBlur(photo, (0, 0), 4).astype(np.float32)
    labels = np.argmin(((smooth[:, :, None, :] - PALETTE[None, None].astype(np.float32)) ** 2).sum(-1), axis=2)
    return PALETTE[labels]


def _jpeg(rgb, quality):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def test_seg_passthrough_returns_a_clean_map_unchanged(astronaut_rgb):
    seg = _segmentation_of(astronaut_rgb)
    assert np.array_equal(flat_segmentation(seg), seg)


def _class_of(rgb):
    return np.argmin(((rgb[:, :, None, :].astype(np.float32) - PALETTE[None, None]) ** 2).sum(-1), axis=2)


def _colours(rgb):
    packed = np.unique((rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2])
    return np.stack([packed >> 16, (packed >> 8) & 255, packed & 255], axis=1).astype(int)


@pytest.mark.parametrize("quality", [75, 95])
def test_seg_passthrough_removes_jpeg_noise(astronaut_rgb, grace_hopper_rgb, quality):
    for photo in (astronaut_rgb, grace_hopper_rgb):
        seg = _segmentation_of(photo)
        noisy = _jpeg(seg, quality)
        assert len(_colours(noisy)) > 1000
        out = flat_segmentation(noisy)
        colours, used = _colours(out), _colours(seg)
        # One colour per class the map uses, each within JPEG's shift (a level or two) of the class colour.
        assert len(colours) == len(used)
        assert np.abs(colours[:, None] - used[None]).max(axis=2).min(axis=1).max() <= 2
        # Every pixel is on its class, except a few along borders where JPEG blurred two classes together.
        assert (_class_of(out) == _class_of(seg)).mean() > 0.98


def test_seg_passthrough_refuses_photos(astronaut_rgb, chelsea_rgb, grace_hopper_rgb):
    for photo in (astronaut_rgb, chelsea_rgb, grace_hopper_rgb):
        with pytest.raises(InputError) as info:
            flat_segmentation(photo)
        assert info.value.field == "image" and "flat-colour" in info.value.message
