"""diffusers `ControlNetModel` key names -> the original (ldm) ControlNet layout.

A pure mapping over key names; the loader applies it to tensors. Block indices follow the ldm encoder:
down block x, layer i  ->  input_blocks[1 + (L+1)·x + i], its downsampler -> input_blocks[(L+1)·(x+1)],
with L = layers per block (resnets in down_blocks.0).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ...errors import ModelFileError

DIFFUSERS_CONTROLNET_MARKER = "controlnet_cond_embedding.conv_in.weight"

_RESNET_PARTS = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}


def _resnet(rest: str) -> str:
    part, _, tail = rest.partition(".")
    return f"{_RESNET_PARTS[part]}.{tail}"


def diffusers_to_ldm_names(keys: Iterable[str]) -> dict[str, str]:
    """Map every diffusers key to its ldm name; unknown keys are an error, never silently dropped."""
    keys = list(keys)
    layers = len({m.group(1) for k in keys if (m := re.match(r"down_blocks\.0\.resnets\.(\d+)\.", k))})
    hint_blocks = len({m.group(1) for k in keys if (m := re.match(r"controlnet_cond_embedding\.blocks\.(\d+)\.", k))})
    mid_has_attention = any(k.startswith("mid_block.attentions.") for k in keys)

    fixed = [
        (r"time_embedding\.linear_1\.(.*)", "time_embed.0.{}"),
        (r"time_embedding\.linear_2\.(.*)", "time_embed.2.{}"),
        (r"(?:add|class)_embedding\.linear_1\.(.*)", "label_emb.0.0.{}"),
        (r"(?:add|class)_embedding\.linear_2\.(.*)", "label_emb.0.2.{}"),
        (r"conv_in\.(.*)", "input_blocks.0.0.{}"),
        (r"controlnet_cond_embedding\.conv_in\.(.*)", "input_hint_block.0.{}"),
        (r"controlnet_cond_embedding\.conv_out\.(.*)", f"input_hint_block.{2 * (hint_blocks + 1)}.{{}}"),
        (r"controlnet_mid_block\.(.*)", "middle_block_out.0.{}"),
        (r"mid_block\.attentions\.0\.(.*)", "middle_block.1.{}"),
    ]

    def convert(key: str) -> str | None:
        for pattern, template in fixed:
            if m := re.fullmatch(pattern, key):
                return template.format(m.group(1))
        if m := re.fullmatch(r"controlnet_cond_embedding\.blocks\.(\d+)\.(.*)", key):
            return f"input_hint_block.{2 * (int(m.group(1)) + 1)}.{m.group(2)}"
        if m := re.fullmatch(r"controlnet_down_blocks\.(\d+)\.(.*)", key):
            return f"zero_convs.{m.group(1)}.0.{m.group(2)}"
        if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            x, kind, i, rest = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
            n = 1 + (layers + 1) * x + i
            return f"input_blocks.{n}.0.{_resnet(rest)}" if kind == "resnets" else f"input_blocks.{n}.1.{rest}"
        if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            return f"input_blocks.{(layers + 1) * (int(m.group(1)) + 1)}.0.op.{m.group(2)}"
        if m := re.fullmatch(r"mid_block\.resnets\.([01])\.(.*)", key):
            index = int(m.group(1)) * (2 if mid_has_attention else 1)
            return f"middle_block.{index}.{_resnet(m.group(2))}"
        return None

    mapping, unknown = {}, []
    for key in keys:
        try:
            new = convert(key)
        except KeyError:
            new = None
        if new is None:
            unknown.append(key)
        else:
            mapping[key] = new
    if unknown:
        shown = ", ".join(sorted(unknown)[:8])
        raise ModelFileError(f"diffusers ControlNet has {len(unknown)} keys with no ldm equivalent: {shown}")
    return mapping
