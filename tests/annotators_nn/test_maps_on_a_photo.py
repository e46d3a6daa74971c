"""Each neural preprocessor on a real photo with random weights in the published layout: the map has the
processing resolution, the reference's channel layout and the value set its post-processing allows."""

import cv2
import numpy as np
import pytest
from nn_test_helpers import PreloadedModels, random_network

from annotator.neural import lineart, mlsd, openpose, softedge


@pytest.fixture(scope="module")
def models():
    specs = [openpose.BODY, softedge.HED, softedge.PIDINET, lineart.LINEART, lineart.LINEART_COARSE,
             lineart.LINEART_ANIME, lineart.MANGA_LINE, mlsd.MLSD]
    small = {softedge.PIDINET, mlsd.MLSD}  # noise on top of the default initialisation: more varied maps
    nets = {spec.weight.name: random_network(spec, seed=n, scale=0.02 if spec in small else 0.0)
            for n, spec in enumerate(specs)}
    return PreloadedModels(nets)


def _check_map(out, shape=(256, 320)):
    assert out.dtype == np.uint8 and out.shape == shape + (3,)
    assert np.array_equal(out[:, :, 0], out[:, :, 1]) and np.array_equal(out[:, :, 0], out[:, :, 2])
    return out[:, :, 0]


def test_softedge_hed_and_its_safe_and_scribble_forms(photo, models):
    soft = _check_map(softedge.softedge_hed(photo, 256, models=models))
    assert soft.std() > 1  # the photo shows through random weights
    safe = _check_map(softedge.softedge_hed(photo, 128, safe=True, models=models), (128, 160))
    assert set(np.unique(safe)) <= {0, 127, 255}
    scribble = _check_map(softedge.scribble_hed(photo, 128, models=models), (128, 160))
    assert set(np.unique(scribble)) <= {0, 255}


def test_pidinet_family(photo, models):
    soft = _check_map(softedge.softedge_pidinet(photo, 256, models=models))
    assert soft.min() < soft.max()
    small = cv2.resize(photo, (160, 128), interpolation=cv2.INTER_AREA)
    safe = _check_map(softedge.softedge_pidinet(small, 128, safe=True, models=models), (128, 160))
    assert set(np.unique(safe)) <= {0, 127, 255}
    assert set(np.unique(_check_map(softedge.scribble_pidinet(small, 128, models=models), (128, 160)))) <= {0, 255}
    sketch = _check_map(softedge.sketch_pidinet(small, 128, models=models), (128, 160))
    assert set(np.unique(sketch)) <= {0, 255}
    padded = np.pad(small, [(0, 0), (0, 32), (0, 0)], mode="edge")  # the reference's multiple-of-64 frame
    assert np.array_equal(sketch == 255, softedge.pidinet_edges(padded, models)[:, :160] > 0.5)


@pytest.mark.parametrize("coarse", [False, True])
def test_lineart_realistic_and_coarse(photo, models, coarse):
    out = _check_map(lineart.lineart(photo, 256, coarse=coarse, models=models))
    lines = lineart._run(lineart.LINEART_COARSE if coarse else lineart.LINEART,
                         lineart._nchw(photo) / 255.0, models)
    assert np.array_equal(out, 255 - (lines * 255).clip(0, 255).astype(np.uint8))  # inverted: white lines


def test_lineart_anime_and_denoise(photo, models):
    anime = _check_map(lineart.lineart_anime(photo, 128, models=models), (128, 160))
    assert anime.std() > 1
    manga = _check_map(lineart.lineart_anime_denoise(photo, 128, models=models), (128, 160))
    assert manga.min() < manga.max()


def test_mlsd_draws_one_pixel_segments_and_thresholds_prune_them(photo, models):
    net = models.nets["mlsd_large_512_fp32.pth"]
    net.block23.conv3.weight.mul_(30)  # longer random segments
    try:
        loose = _check_map(mlsd.mlsd(photo, 128, 0.01, 0.01, models=models), (128, 160))
        strict = _check_map(mlsd.mlsd(photo, 128, 0.5, 8.0, models=models), (128, 160))
    finally:
        net.block23.conv3.weight.div_(30)
    assert set(np.unique(loose)) <= {0, 255} and (loose == 255).sum() > 20
    assert (strict == 255).sum() < (loose == 255).sum()


def test_openpose_on_a_photo_gives_a_canvas_and_pose_json(photo, models):
    drawn, pose = openpose.openpose(photo, 256, body=True, hands=False, face=False, models=models)
    assert drawn.shape == (256, 320, 3) and drawn.dtype == np.uint8
    assert pose["canvas_height"] == 256 and pose["canvas_width"] == 320 and pose["animals"] == []
    for person in pose["people"]:  # random weights may find "people"; their JSON must still be well formed
        assert len(person["pose_keypoints_2d"]) == 54
