"""Preprocessors at 512 x 512 (skimage's astronaut): each module's time per call as a ratio to the library
call that does its real work, both timed side by side in this run, plus the cost of a cache hit.

Targets: canny / bare cv2.Canny <= 1.1; a cache hit <= 1 ms. The other ratios show what our wrapping
costs (resizing, padding, channel expansion); mediapipe rows compare with building the same mediapipe
graph and running it once, which is what a call has to do.
Usage: python bench/bench_preprocessors.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def median_seconds(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def side_by_side(ours, library, rounds: int) -> tuple[float, float]:
    """Medians of interleaved batches, so that machine load drifts hit both sides alike."""
    ours(), library()  # warm up (first calls allocate, load graphs)
    a, b = [], []
    for _ in range(5):
        a.append(median_seconds(ours, rounds))
        b.append(median_seconds(library, rounds))
    return statistics.median(a), statistics.median(b)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import skimage.data

    from annotator.blur import blur_gaussian
    from annotator.canny import canny
    from annotator.color_grid import color_grid
    from annotator.flat_segmentation import flat_segmentation
    from annotator.invert import invert
    from annotator.lineart_standard import lineart_standard
    from annotator.mediapipe_face import mediapipe_face
    from annotator.mediapipe_loader import solutions
    from annotator.mediapipe_openpose import mediapipe_openpose
    from annotator.recolor import recolor_intensity, recolor_luminance
    from annotator.shuffle import shuffle
    from annotator.threshold import threshold
    from annotator.tile import tile_resample
    from annotator.xdog import scribble_xdog
    from lib_controlnet.preprocessors import ResultCache, default_registry, resolve_params, run_preprocessor
    from lib_controlnet.preprocessors.map_resize import high_quality_resize

    img = np.ascontiguousarray(skimage.data.astronaut())
    f32 = img.astype(np.float32)
    flow = np.random.RandomState(0).uniform(0, 511, size=(2, 512, 512)).astype(np.float32)
    palette = np.array([[120, 120, 120], [180, 120, 120], [6, 230, 230], [80, 50, 50]], np.uint8)
    seg = palette[(cv2.GaussianBlur(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), (0, 0), 4) // 64).clip(0, 3)]
    _, jpeg = cv2.imencode(".jpg", seg, [cv2.IMWRITE_JPEG_QUALITY, 90])
    seg_jpeg = cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED)
    edges = canny(img, 512, 100, 200)
    mp = solutions("bench")

    def face_mesh_call():
        with mp.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                   min_detection_confidence=0.5) as mesh:
            mesh.process(img)

    def holistic_call():
        with mp.holistic.Holistic(static_image_mode=True, model_complexity=1, refine_face_landmarks=True) as h:
            h.process(img)

    rows = [
        ("canny", lambda: canny(img, 512, 100, 200), "cv2.Canny", lambda: cv2.Canny(img, 100, 200)),
        ("blur_gaussian", lambda: blur_gaussian(img, 512, 9.0), "cv2.GaussianBlur",
         lambda: cv2.GaussianBlur(img, (0, 0), 9.0)),
        ("scribble_xdog", lambda: scribble_xdog(img, 512, 32), "2x GaussianBlur f32",
         lambda: (cv2.GaussianBlur(f32, (0, 0), 0.5), cv2.GaussianBlur(f32, (0, 0), 5.0))),
        ("lineart_standard", lambda: lineart_standard(img, 512), "GaussianBlur f32",
         lambda: cv2.GaussianBlur(f32, (0, 0), 6.0)),
        ("threshold", lambda: threshold(img, 512, 127), "channel min > t",
         lambda: np.minimum(np.minimum(img[:, :, 0], img[:, :, 1]), img[:, :, 2]) > 127),
        ("invert", lambda: invert(img), "255 - x", lambda: 255 - img),
        ("shuffle (seeded)", lambda: shuffle(img, 512, 1), "cv2.remap", lambda: cv2.remap(img, flow[0], flow[1],
                                                                                         cv2.INTER_LINEAR)),
        ("color", lambda: color_grid(img, 512), "2x cv2.resize",
         lambda: cv2.resize(cv2.resize(img, (8, 8), interpolation=cv2.INTER_CUBIC), (512, 512),
                            interpolation=cv2.INTER_NEAREST)),
        ("tile_resample (2x)", lambda: tile_resample(img, 2.0), "cv2.resize AREA",
         lambda: cv2.resize(img, (256, 256), interpolation=cv2.INTER_AREA)),
        ("recolor_luminance", lambda: recolor_luminance(img, 1.2), "cvtColor RGB2LAB",
         lambda: cv2.cvtColor(img, cv2.COLOR_RGB2LAB)),
        ("recolor_intensity", lambda: recolor_intensity(img, 1.2), "channel max",
         lambda: np.maximum(np.maximum(img[:, :, 0], img[:, :, 1]), img[:, :, 2])),
        ("seg_passthrough (jpeg)", lambda: flat_segmentation(seg_jpeg), "np.unique colours",
         lambda: np.unique(seg_jpeg.reshape(-1, 3).view(np.dtype((np.void, 3))))),
        ("hq resize edges 2x", lambda: high_quality_resize(edges, (1024, 1024)), "cv2.resize CUBIC",
         lambda: cv2.resize(edges, (1024, 1024), interpolation=cv2.INTER_CUBIC)),
        ("mediapipe_face", lambda: mediapipe_face(img, 512, 1, 0.5), "FaceMesh build+process", face_mesh_call),
        ("mediapipe_openpose_full", lambda: mediapipe_openpose(img, 512, body=True, hands=True, face=True),
         "Holistic build+process", holistic_call),
    ]
    print(f"{'module':26s} {'ours ms':>9s} {'library call':24s} {'lib ms':>8s} {'ratio':>6s}")
    for name, ours, lib_name, lib in rows:
        rounds = 3 if name.startswith("mediapipe") else args.rounds
        a, b = side_by_side(ours, lib, rounds)
        print(f"{name:26s} {a * 1e3:9.2f} {lib_name:24s} {b * 1e3:8.2f} {a / b:6.2f}")

    canny_p = default_registry().get("canny")
    params = resolve_params(canny_p, 512, 100, 200)
    cache = ResultCache()
    run_preprocessor(canny_p, img, params, cache=cache)
    hit = median_seconds(lambda: run_preprocessor(canny_p, img, params, cache=cache), 200)
    miss = median_seconds(lambda: run_preprocessor(canny_p, img, params, cache=ResultCache(0)), args.rounds)
    bare = median_seconds(lambda: cv2.Canny(img, 100, 200), args.rounds)
    print(f"\nregistry canny uncached: {miss * 1e3:.2f} ms ({miss / bare:.2f}x bare cv2.Canny)")
    print(f"cache hit (512x512 canny): {hit * 1e3:.3f} ms  (target <= 1 ms; {cache.hits} hits)")
    a, b = side_by_side(lambda: canny(img, 512, 100, 200), lambda: cv2.Canny(img, 100, 200), args.rounds)
    print(f"canny / cv2.Canny: {a / b:.3f}  (target <= 1.1)")


if __name__ == "__main__":
    main()
