"""ControlNet Union / ProMax (xinsir) files: which keys are the union's own, and their one spelling.

A union file is an SDXL ControlNet (diffusers names in xinsir's published single files and folders; ldm
names if someone converted it) plus a task-fusion head that keeps its diffusers names in every layout:
`task_embedding`, `transformer_layes.*` (sic), `spatial_ch_projs.*`, `control_add_embedding.linear_{1,2}.*`.
ComfyUI-style saves spell the attention's packed projection `attn.in_proj.weight`; the published name is
`attn.in_proj_weight` (nn.MultiheadAttention's), which the network uses.
"""

from __future__ import annotations

from collections.abc import Iterable

UNION_MARKER = "control_add_embedding.linear_1.weight"
UNION_PREFIXES = ("task_embedding", "transformer_layes.", "spatial_ch_projs.", "control_add_embedding.")


def is_union_key(key: str) -> bool:
    return key.startswith(UNION_PREFIXES)


def union_key_names(keys: Iterable[str]) -> dict[str, str]:
    """source key -> network key for the union head's tensors (every other key is left out)."""
    return {k: k.replace(".attn.in_proj.", ".attn.in_proj_") for k in keys if is_union_key(k)}
