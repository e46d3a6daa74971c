"""diffusers `T2IAdapter` key names -> TencentARC's original names (the layout `networks.t2i_adapter` loads).

diffusers groups each level's blocks (`adapter.body.{level}.resnets.{r}`); the original numbers them flat:

- full adapters (FullAdapter, FullAdapterXL): `adapter.conv_in` -> `conv_in`;
  `adapter.body.{i}.in_conv` -> `body.{i*n}.in_conv` (the level's first block owns the width change);
  `adapter.body.{i}.resnets.{r}.*` -> `body.{i*n + r}.*`, with n the blocks per level;
- light adapters: `adapter.body.{i}.{in_conv,out_conv}` -> `body.{i}.{...}`;
  `adapter.body.{i}.resnets.{r}.*` -> `body.{i}.body.{r}.*`.

Which of the two a diffusers file is comes from its keys (a light adapter has `out_conv`s, a full one
`conv_in`), or from config.json's `adapter_type` when there is one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

DIFFUSERS_T2I_MARKERS = ("adapter.body.0.resnets.0.block1.weight",)

_RESNET = re.compile(r"^adapter\.body\.(\d+)\.resnets\.(\d+)\.(.+)$")
_LEVEL = re.compile(r"^adapter\.body\.(\d+)\.(in_conv|out_conv)\.(.+)$")


def is_diffusers_t2i(keys: Iterable[str]) -> bool:
    return any(k in DIFFUSERS_T2I_MARKERS for k in keys)


def diffusers_t2i_to_original_names(keys: Iterable[str]) -> dict[str, str]:
    """{diffusers key: original key} for every tensor of a diffusers T2I-Adapter."""
    keys = list(keys)
    light = any(k.startswith("adapter.body.0.out_conv.") for k in keys)
    per_level = 1 + max((int(m.group(2)) for k in keys if (m := _RESNET.match(k))), default=0)
    mapping = {}
    for key in keys:
        if m := _RESNET.match(key):
            level, r, rest = int(m.group(1)), int(m.group(2)), m.group(3)
            mapping[key] = f"body.{level}.body.{r}.{rest}" if light else f"body.{level * per_level + r}.{rest}"
        elif m := _LEVEL.match(key):
            level, name, rest = int(m.group(1)), m.group(2), m.group(3)
            mapping[key] = f"body.{level}.{name}.{rest}" if light else f"body.{level * per_level}.{name}.{rest}"
        elif key.startswith("adapter."):
            mapping[key] = key[len("adapter."):]
        else:
            raise KeyError(f"unexpected key in a diffusers T2I-Adapter: {key}")
    return mapping
