"""Neural annotators on the CPU at a 512 x 512 photo (skimage's astronaut), with random weights in the
published layouts: seconds per call of each network's forward at the size its preprocessor feeds it, and of
the whole preprocessor (resizing, padding, pre/post-processing, device placement) around it.

Random weights find no people, so openpose's row is the body network only; the hand (four scales of one
hand crop) and face networks, which run once per detected hand and face, have rows of their own.
Depth Anything (V1, V2) runs at ViT-S (the reference's files are ViT-L); depth_leres++'s network column is
the merge network at 1024 x 1024, its preprocessor column all of the boosting around LeReS.
Usage: python bench/bench_annotators_nn.py [--rounds N] [--threads N] [--only NAME,NAME]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(fn, rounds: int) -> tuple[float, float]:
    """Median wall seconds and median process CPU seconds per call (CPU time is what a shared, loaded
    machine does not distort: on an idle machine wall ~ CPU / threads)."""
    fn()  # warm up
    walls, cpus = [], []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--only", default="", help="comma-separated row names")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests" / "annotators_nn"))
    import numpy as np
    import skimage.data
    import torch
    from nn_test_helpers import PreloadedModels, random_network

    from annotator.neural import (
        anime_face,
        depth_anything,
        dsine,
        eva_clip,
        facexlib_faces,
        leres,
        lineart,
        midas,
        mlsd,
        mobile_sam,
        normal_bae,
        oneformer,
        openpose,
        softedge,
        teed,
        uniformer,
        zoe,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    photo = skimage.data.astronaut()  # 512 x 512
    rng = np.random.default_rng(0)

    def rand_input(*shape):
        return torch.from_numpy(rng.standard_normal(shape).astype(np.float32))

    # name: (spec, preprocessor call or None, network input shape)
    rows = {
        "openpose (body)": (openpose.BODY, lambda m: openpose.openpose(photo, 512, body=True, hands=False, face=False,
                                                                       models=m), (1, 3, 184, 184)),
        "openpose hand (4 scales)": (openpose.HAND, None, None),
        "openpose face": (openpose.FACE, None, (1, 3, 384, 384)),
        "softedge_hed": (softedge.HED, lambda m: softedge.softedge_hed(photo, 512, models=m), (1, 3, 512, 512)),
        "softedge_pidinet": (softedge.PIDINET, lambda m: softedge.softedge_pidinet(photo, 512, models=m),
                             (1, 3, 512, 512)),
        "lineart_realistic": (lineart.LINEART, lambda m: lineart.lineart(photo, 512, models=m), (1, 3, 512, 512)),
        "lineart_anime": (lineart.LINEART_ANIME, lambda m: lineart.lineart_anime(photo, 512, models=m),
                          (1, 3, 512, 512)),
        "lineart_anime_denoise": (lineart.MANGA_LINE, lambda m: lineart.lineart_anime_denoise(photo, 512, models=m),
                                  (1, 1, 512, 512)),
        "mlsd": (mlsd.MLSD, lambda m: mlsd.mlsd(photo, 512, 0.1, 0.1, models=m), (1, 4, 512, 512)),
        "depth_midas": (midas.MIDAS, lambda m: midas.depth_midas(photo, 512, models=m), (1, 3, 512, 512)),
        "depth_anything_v2 (ViT-S)": (depth_anything.DEPTH_ANYTHING_V2,
                                      lambda m: depth_anything.depth_anything_v2(photo, 512, models=m),
                                      (1, 3, 518, 518)),
        "normal_bae": (normal_bae.NORMAL_BAE, lambda m: normal_bae.normal_bae(photo, 512, models=m), (1, 3, 512, 512)),
        "softedge_teed": (teed.TEED, lambda m: teed.softedge_teed(photo, 512, models=m), (1, 3, 512, 512)),
        "softedge_anyline (at 512)": (teed.MTEED, lambda m: teed.softedge_anyline(photo, 512, models=m),
                                      (1, 3, 512, 512)),
        "depth_anything V1 (ViT-S)": (depth_anything.DEPTH_ANYTHING_V1,
                                       lambda m: depth_anything.depth_anything(photo, 512, models=m), (1, 3, 518, 518)),
        "depth_zoe": (zoe.ZOE, lambda m: zoe.depth_zoe(photo, 512, models=m), (1, 3, 384, 384)),
        "depth_leres": (leres.LERES, lambda m: leres.depth_leres(photo, 512, models=m), (1, 3, 512, 512)),
        "depth_leres++ (merge net)": (leres.MERGE, lambda m: leres.depth_leres(photo, 512, boost=True, models=m),
                                      (1, 2, 1024, 1024)),
        "normal_dsine": (dsine.DSINE, lambda m: dsine.normal_dsine(photo, 512, models=m), (1, 3, 512, 512)),
        # Issue 16's second half. A shape may be a function of the network that runs one forward. Not timed:
        # densepose (the published file is a TorchScript program, there is no layout to fill with random
        # weights) and the ONNX modules (their cost is onnxruntime's on the published graphs); facexlib's whole
        # preprocessor needs a face, which random weights never find.
        "seg_ufade20k (UniFormer-S)": (uniformer.UNIFORMER, lambda m: uniformer.seg_ufade20k(photo, 512, models=m),
                                       (1, 3, 512, 512)),
        "seg_ofade20k (OneFormer Swin-L)": (oneformer.ONEFORMER_ADE20K,
                                            lambda m: oneformer.seg_ofade20k(photo, 512, models=m),
                                            lambda net: net(rand_input(1, 3, 640, 640), oneformer.task_tokens())),
        "seg_anime_face": (anime_face.ANIME_FACE, lambda m: anime_face.seg_anime_face(photo, 512, models=m),
                           (1, 3, 512, 512)),
        "mobile_sam": (mobile_sam.MOBILE_SAM, lambda m: mobile_sam.mobile_sam(photo, 512, models=m),
                       lambda net: net.image_encoder(rand_input(1, 3, 1024, 1024))),
        "facexlib RetinaFace-R50": (facexlib_faces.RETINAFACE, None, (1, 3, 512, 512)),
        "facexlib BiSeNet": (facexlib_faces.BISENET, None, (1, 3, 512, 512)),
        # ip-adapter_pulid's own network (its other parts are the facexlib rows and antelopev2 on onnxruntime)
        "EVA02-CLIP-L-14-336 (PuLID)": (eva_clip.EVA_CLIP, None, (1, 3, 336, 336)),
    }
    # Networks a preprocessor needs besides its row's own.
    extras = {"depth_leres++ (merge net)": [leres.LERES]}
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, float32, median of {args.rounds}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'annotator':32s} {'params':>8s} {'network s (cpu s)':>18s} {'preprocessor s (cpu s)':>23s}")
    for name, (spec, call, shape) in rows.items():
        if only and name not in only:
            continue
        if spec in (depth_anything.DEPTH_ANYTHING_V2, depth_anything.DEPTH_ANYTHING_V1):
            torch.manual_seed(0)
            net = depth_anything.DepthAnythingV2(depth_anything.SIZES[384], v1=spec is depth_anything.DEPTH_ANYTHING_V1)
            net = net.eval().requires_grad_(False)
        else:
            net = random_network(spec)
        params = sum(p.numel() for p in net.parameters()) / 1e6
        models = PreloadedModels({spec.weight.name: net, **{s.weight.name: random_network(s) for s in
                                                             extras.get(name, ())}})
        with torch.inference_mode():
            if spec is dsine.DSINE:  # the network needs a camera too
                k = dsine.intrinsics_from_fov(60.0, *shape[2:])
                network = timed(partial(net, rand_input(*shape), k), args.rounds)
            elif spec is openpose.HAND:
                crop = np.ascontiguousarray(photo[150:350, 150:350, ::-1])
                network = timed(partial(openpose.hand_points, net, crop, torch.device("cpu")), args.rounds)
            elif callable(shape):
                network = timed(partial(shape, net), args.rounds)
            else:
                network = timed(partial(net, rand_input(*shape)), args.rounds)
        whole = "-" if call is None else "{:8.2f} ({:6.2f})".format(*timed(partial(call, models), args.rounds))
        print(f"{name:32s} {params:7.1f}M {network[0]:9.2f} ({network[1]:6.2f}) {whole:>23s}", flush=True)


if __name__ == "__main__":
    main()
