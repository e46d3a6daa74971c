"""What is this state dict? A pure, table-driven answer from key names and tensor shapes.

`detect(shapes)` never looks at file names or tensor values. It returns the file's format (which
conversion makes it ldm-layout), the model kind, the SD family and the network's architecture.
Formats we recognise but do not run yet get an error that says so; unknown dicts get an error that
lists every format we know.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from ..errors import ModelFileError, NotAControlModelError
from .conversion.control_lora import CONTROL_LORA_MARKER, control_lora_shapes
from .conversion.difference import DIFFERENCE_MARKER
from .conversion.diffusers_controlnet import DIFFUSERS_CONTROLNET_MARKER, diffusers_to_ldm_names
from .conversion.diffusers_t2i_adapter import DIFFUSERS_T2I_MARKERS, diffusers_t2i_to_original_names
from .conversion.union import is_union_key, union_key_names
from .networks.arch import ControlNetArch, arch_from_shapes
from .networks.ip_adapter import IPAdapterArch, ip_adapter_arch
from .networks.t2i_adapter import AdapterArch, StyleArch, adapter_arch_from_shapes, style_arch_from_shapes

Shapes = Mapping[str, tuple[int, ...]]
LDM_PREFIX = "control_model."


# (keys without the `control_model.` prefix, config) -> (key map: stripped key -> network key, arch, family)
Analyse = Callable[[Shapes, "Mapping | None"], "tuple[dict[str, str], object, str]"]


@dataclass(frozen=True)
class FormatRule:
    name: str
    matches: Callable[[Shapes], bool]
    supported: bool = True
    description: str = ""
    kind: str = "controlnet"  # the model kind (kinds.BUILDERS) that runs this format
    analyse: Analyse | None = None  # kinds other than ControlNets say here what network the keys describe


def _has(*keys: str) -> Callable[[Shapes], bool]:
    return lambda s: all(k in s for k in keys)


def _any_contains(fragment: str) -> Callable[[Shapes], bool]:
    return lambda s: any(fragment in k for k in s)


def _t2i_adapter(shapes: Shapes, config: Mapping | None):
    """Full and light adapters, original layout (an `adapter.` prefix tolerated) or diffusers'."""
    if any(k in shapes for k in DIFFUSERS_T2I_MARKERS):
        key_map = diffusers_t2i_to_original_names(shapes)
    else:
        key_map = {k: k.removeprefix("adapter.") for k in shapes}
    arch = adapter_arch_from_shapes({key_map[k]: v for k, v in shapes.items()})
    return key_map, arch, "sdxl" if arch.is_sdxl else "sd1"


def _t2i_style(shapes: Shapes, config: Mapping | None):
    arch = style_arch_from_shapes(shapes)
    family = {768: "sd1", 1024: "sd2", 2048: "sdxl"}.get(arch.context_dim)
    if family is None:
        raise ModelFileError(f"a style adapter for a {arch.context_dim}-wide text context fits no SD family")
    return {k: k for k in shapes}, arch, family


def _control_lora(shapes: Shapes, config: Mapping | None):
    """The ControlNet the LoRA describes: `X.up`/`X.down` pairs stand for the weight `X.weight` (the host's)."""
    ldm_shapes = control_lora_shapes(shapes)
    arch = arch_from_shapes(ldm_shapes)
    family_rule = next(r for r in FAMILY_RULES if r.matches(arch))
    arch = replace(arch, **family_rule.heads)
    return {k: k for k in shapes if k != CONTROL_LORA_MARKER}, arch, family_rule.family


def _ip_adapter(shapes: Shapes, config: Mapping | None):
    """SDXL by its 2048-wide context or its 70 cross-attentions (SD1.x/2.x UNets have 16); PuLID is published
    for SDXL only (its attention and ID encoder were trained on SDXL), whatever the widths."""
    arch = ip_adapter_arch(shapes)
    if arch.cross_dim == 2048 or arch.num_layers == 70 or arch.projection == "pulid":
        family = "sdxl"
    elif arch.cross_dim == 1024:
        family = "sd2"
    else:
        family = "sd1"
    return {k: k for k in shapes}, arch, family


def _is_t2i_full(s: Shapes) -> bool:
    return any(k in s for k in ("conv_in.weight", "adapter.conv_in.weight")) and any(
        k in s for k in ("body.0.block1.weight", "adapter.body.0.block1.weight"))


def _is_t2i_light(s: Shapes) -> bool:
    return any(f"{p}body.0.in_conv.weight" in s and f"{p}body.0.out_conv.weight" in s for p in ("", "adapter."))


# Checked in order; the first match wins. Keys are already stripped of the `control_model.` prefix.
FORMAT_RULES: tuple[FormatRule, ...] = (
    FormatRule("control-lora", _has(CONTROL_LORA_MARKER), True, "Stability Control-LoRA", "control_lora",
               _control_lora),
    FormatRule("sparsectrl", _any_contains("motion_modules."), False, "AnimateDiff SparseCtrl"),
    FormatRule("controlnet-union", _any_contains("control_add_embedding."), True, "ControlNet Union / ProMax",
               kind="controlnet_union"),
    FormatRule("diffusers-controlnet", _has(DIFFUSERS_CONTROLNET_MARKER), True, "diffusers ControlNetModel"),
    FormatRule("diffusers-t2i-adapter", lambda s: any(k in s for k in DIFFUSERS_T2I_MARKERS), True,
               "diffusers T2IAdapter", "t2i_adapter", _t2i_adapter),
    FormatRule("t2i-style-adapter", _has("style_embedding", "proj"), True, "T2I-Adapter style", "t2i_style_adapter",
               _t2i_style),
    FormatRule("t2i-adapter-light", _is_t2i_light, True, "T2I-Adapter light", "t2i_adapter", _t2i_adapter),
    FormatRule("t2i-adapter", _is_t2i_full, True, "T2I-Adapter", "t2i_adapter", _t2i_adapter),
    FormatRule("ip-adapter", lambda s: any(k.startswith("ip_adapter.") for k in s), True, "IP-Adapter",
               "ip_adapter", _ip_adapter),
    FormatRule("controllllite", _any_contains("lllite"), False, "ControlLLLite"),
    FormatRule("ldm-controlnet-difference", _has(DIFFERENCE_MARKER, "input_hint_block.0.weight"), True,
               "original ControlNet stored as a difference to the base UNet"),
    FormatRule("ldm-controlnet", _has("input_hint_block.0.weight", "zero_convs.0.0.weight"), True,
               "original (ldm) ControlNet"),
)


@dataclass(frozen=True)
class FamilyRule:
    family: str
    matches: Callable[[ControlNetArch], bool]
    heads: dict  # how the attention heads split for this family (published configs)


# SD1 ControlNets split attention into 8 heads (cldm_v15.yaml); SD2 (cldm_v21.yaml) and SDXL use 64-wide heads.
FAMILY_RULES: tuple[FamilyRule, ...] = (
    FamilyRule("sdxl", lambda a: a.adm_in_channels is not None, {"head_dim": 64}),
    FamilyRule("sd2", lambda a: a.context_dim == 1024 or a.linear_projection, {"head_dim": 64}),
    FamilyRule("sd1", lambda a: True, {"num_heads": 8}),
)

SDXL_VARIANTS = (("full", 10), ("mid", 1), ("small", 0))


@dataclass(frozen=True)
class Detection:
    format: str
    kind: str
    family: str
    arch: ControlNetArch | AdapterArch | StyleArch | IPAdapterArch
    key_map: dict[str, str]  # source key -> ldm key, for every tensor the network takes
    prefix: str = ""
    is_difference: bool = False

    @property
    def variant(self) -> str:
        """SDXL 'full'/'mid'/'small' by its deepest transformer; '' for SD1/SD2."""
        if self.family != "sdxl" or not isinstance(self.arch, ControlNetArch):
            return ""
        depth = max((b.attention_depth or 0 for b in self.arch.input_blocks if hasattr(b, "attention_depth")),
                    default=0)
        return next((name for name, d in SDXL_VARIANTS if depth >= d), "small")


def strip_prefix(shapes: Shapes) -> tuple[Shapes, str]:
    """Original v1.0 files carry `control_model.` (and sometimes a whole SD checkpoint beside it)."""
    if any(k.startswith(LDM_PREFIX) for k in shapes):
        return {k[len(LDM_PREFIX):]: v for k, v in shapes.items() if k.startswith(LDM_PREFIX)}, LDM_PREFIX
    return shapes, ""


def detect(shapes: Shapes, config: Mapping | None = None) -> Detection:
    stripped, prefix = strip_prefix(shapes)
    if DIFFERENCE_MARKER in shapes:  # the marker sits beside the prefixed keys
        stripped = {**stripped, DIFFERENCE_MARKER: shapes[DIFFERENCE_MARKER]}
    rule = next((r for r in FORMAT_RULES if r.matches(stripped)), None)
    if rule is None:
        known = "; ".join(f"{r.name} ({r.description})" for r in FORMAT_RULES)
        sample = ", ".join(sorted(shapes)[:5])
        raise NotAControlModelError(
            f"not a recognised control model ({len(shapes)} keys, e.g. {sample}). Recognised formats: {known}"
        )
    if not rule.supported:
        raise ModelFileError(f"recognised as {rule.description} ({rule.name}), which is not supported yet")
    if rule.analyse is not None:
        key_map, arch, family = rule.analyse(stripped, config)
        return Detection(format=rule.name, kind=rule.kind, family=family, arch=arch,
                         key_map={prefix + k: v for k, v in key_map.items()}, prefix=prefix)

    extra_keys: dict[str, str] = {}
    if rule.name == "controlnet-union":  # an SDXL ControlNet in either layout, plus its task-fusion head
        extra_keys = {prefix + k: v for k, v in union_key_names(stripped).items()}
        stripped = {k: v for k, v in stripped.items() if not is_union_key(k)}
    if DIFFUSERS_CONTROLNET_MARKER in stripped:
        key_map = {prefix + k: v for k, v in diffusers_to_ldm_names(stripped).items()}
    else:
        key_map = {prefix + k: k for k in stripped if k != DIFFERENCE_MARKER}
    ldm_shapes = {key_map[k]: shapes[k] for k in key_map}
    arch = arch_from_shapes(ldm_shapes)
    key_map.update(extra_keys)
    family_rule = next(r for r in FAMILY_RULES if r.matches(arch))
    arch = replace(arch, **_heads_from_config(config, arch) or family_rule.heads)
    return Detection(
        format=rule.name,
        kind=rule.kind,
        family=family_rule.family,
        arch=arch,
        key_map=key_map,
        prefix=prefix,
        is_difference=rule.name == "ldm-controlnet-difference",
    )


def _heads_from_config(config: Mapping | None, arch: ControlNetArch) -> dict | None:
    """diffusers configs state heads per level (`num_attention_heads`, or legacy `attention_head_dim`)."""
    if not config:
        return None
    heads = config.get("num_attention_heads") or config.get("attention_head_dim")
    if heads is None:
        return None
    if isinstance(heads, int):
        return {"num_heads": heads}
    return {"heads_per_level": tuple(int(h) for h in heads)}
