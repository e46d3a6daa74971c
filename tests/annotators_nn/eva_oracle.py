"""BAAI's EVA-CLIP vision tower as a test oracle: `consisid_eva_clip` (PyPI, Apache-2.0; installed --no-deps by
tools/bootstrap.sh) ships eva_clip/eva_vit_model.py, rope.py and transformer.py as the reference's
sd-webui-controlnet-evaclip and ToTheBeginning/PuLID vendor them (only reformatted).

Its package `__init__` pulls the text tower, tokenizer and transforms (ftfy, regex, torchvision, timm); only
the vision modules are imported here, under a bare package object, with stand-ins for the three timm helpers
eva_vit_model imports (to_2tuple; drop_path and trunc_normal_, used only for training and initialisation) and
for torchvision's FrozenBatchNorm2d, which transformer.py's utils import and the vision tower never uses. The
stand-ins leave sys.modules as it was afterwards.
"""

from __future__ import annotations

import collections.abc
import importlib
import importlib.util
import sys
import types
from functools import partial
from pathlib import Path

import torch

PACKAGE = "consisid_eva_clip"
STUBBED = ("timm", "timm.layers", "torchvision", "torchvision.ops", "torchvision.ops.misc")


def _to_2tuple(x):
    return tuple(x) if isinstance(x, collections.abc.Iterable) else (x, x)


def _stubs() -> dict[str, types.ModuleType]:
    timm, layers = types.ModuleType("timm"), types.ModuleType("timm.layers")
    layers.to_2tuple = _to_2tuple
    layers.drop_path = lambda x, drop_prob=0.0, training=False: x
    layers.trunc_normal_ = lambda t, std=1.0, **kw: torch.nn.init.trunc_normal_(t, std=std)
    vision, ops, misc = (types.ModuleType(n) for n in ("torchvision", "torchvision.ops", "torchvision.ops.misc"))
    misc.FrozenBatchNorm2d = None
    return {"timm": timm, "timm.layers": layers, "torchvision": vision, "torchvision.ops": ops,
            "torchvision.ops.misc": misc}


def eva_modules():
    """(eva_vit_model, transformer) modules of consisid_eva_clip."""
    if f"{PACKAGE}.eva_vit_model" not in sys.modules:
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None:
            raise RuntimeError(f"{PACKAGE} is not installed: run tools/bootstrap.sh (pip install --no-deps "
                               f"{PACKAGE}==1.0.2)")
        saved = {name: sys.modules.get(name) for name in (*STUBBED, PACKAGE)}
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(Path(spec.origin).parent)]
        sys.modules.update({**_stubs(), PACKAGE: package})
        try:
            importlib.import_module(f"{PACKAGE}.eva_vit_model")
        finally:
            for name, module in saved.items():
                if name == PACKAGE:
                    continue
                if module is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = module
    return sys.modules[f"{PACKAGE}.eva_vit_model"], sys.modules[f"{PACKAGE}.transformer"]


def upstream_tower(*, image_size=336, patch=14, width=1024, depth=24, out=768, mlp_ratio=2.6667):
    """EVAVisionTransformer as eva_clip's model.py builds it from EVA02-CLIP-L-14-336.json (fusedLN falls back
    to its LayerNorm; without xformers xattn falls back to plain attention, as the reference runs on CPU)."""
    eva_vit_model, transformer = eva_modules()
    return eva_vit_model.EVAVisionTransformer(
        img_size=image_size, patch_size=patch, num_classes=out, use_mean_pooling=False, init_values=None,
        patch_dropout=0.0, embed_dim=width, depth=depth, num_heads=width // 64, mlp_ratio=mlp_ratio, qkv_bias=True,
        drop_path_rate=0.0, norm_layer=partial(transformer.LayerNorm, eps=1e-6), xattn=True, rope=True,
        postnorm=False, pt_hw_seq_len=16, intp_freq=True, naiveswiglu=True, subln=True)
