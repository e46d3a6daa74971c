"""`ip-adapter-auto`: which preprocessor a published IP-Adapter file takes, by its file stem (the reference's
preset table), and the LoRA a FaceID file is published with.

The stem is the model name before " [hash]". A file not in the table is an error that says to pick the
preprocessor by hand: keys cannot tell ViT-H from ViT-bigG hidden states in every case, nor FaceID plus v2.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import InputError

CLIP_H = "ip-adapter_clip_sd15"  # label ip-adapter_clip_h
CLIP_G = "ip-adapter_clip_sdxl"  # label ip-adapter_clip_g
FACE_ID = "ip-adapter_face_id"
FACE_ID_PLUS = "ip-adapter_face_id_plus"
PULID = "ip-adapter_pulid"


@dataclass(frozen=True)
class Preset:
    model: str  # file stem
    module: str  # preprocessor name
    family: str
    lora: str | None = None  # the LoRA published beside it (FaceID)


PRESETS: tuple[Preset, ...] = (
    Preset("ip-adapter_sd15_light", CLIP_H, "sd1"),
    Preset("ip-adapter_sd15_light_v11", CLIP_H, "sd1"),
    Preset("ip-adapter_sd15_vit-G", CLIP_G, "sd1"),
    Preset("ip-adapter_sd15", CLIP_H, "sd1"),
    Preset("ip-adapter-plus_sd15", CLIP_H, "sd1"),
    Preset("ip-adapter_sd15_plus", CLIP_H, "sd1"),
    Preset("ip-adapter_plus_composition_sd15", CLIP_H, "sd1"),
    Preset("ip-adapter-plus-face_sd15", CLIP_H, "sd1"),
    Preset("ip-adapter-full-face_sd15", CLIP_H, "sd1"),
    Preset("ip-adapter-faceid_sd15", FACE_ID, "sd1", "ip-adapter-faceid_sd15_lora"),
    Preset("ip-adapter-faceid-plus_sd15", FACE_ID_PLUS, "sd1", "ip-adapter-faceid-plus_sd15_lora"),
    Preset("ip-adapter-faceid-plusv2_sd15", FACE_ID_PLUS, "sd1", "ip-adapter-faceid-plusv2_sd15_lora"),
    Preset("ip-adapter-faceid-portrait_sd15", FACE_ID, "sd1"),
    Preset("ip-adapter-faceid-portrait-v11_sd15", FACE_ID, "sd1"),
    Preset("ip-adapter_sdxl", CLIP_G, "sdxl"),
    Preset("ip-adapter_sdxl_vit-h", CLIP_H, "sdxl"),
    Preset("ip-adapter-plus_sdxl_vit-h", CLIP_H, "sdxl"),
    Preset("ip-adapter_plus_composition_sdxl", CLIP_H, "sdxl"),
    Preset("ip-adapter-plus-face_sdxl_vit-h", CLIP_H, "sdxl"),
    Preset("ip-adapter-faceid_sdxl", FACE_ID, "sdxl", "ip-adapter-faceid_sdxl_lora"),
    Preset("ip-adapter-faceid-plusv2_sdxl", FACE_ID_PLUS, "sdxl", "ip-adapter-faceid-plusv2_sdxl_lora"),
    Preset("ip-adapter-faceid-portrait_sdxl", FACE_ID, "sdxl"),
    Preset("ip-adapter_pulid_sdxl_fp16", PULID, "sdxl"),
)
BY_MODEL = {p.model: p for p in PRESETS}


def stem(model_name: str) -> str:
    return model_name.split("[")[0].strip()


def preset_for(model_name: str) -> Preset | None:
    return BY_MODEL.get(stem(model_name))


def auto_module(model_name: str) -> str:
    """The preprocessor `ip-adapter-auto` stands for with this model, or an InputError naming `module`."""
    preset = preset_for(model_name)
    if preset is None:
        raise InputError(f"ip-adapter-auto: {stem(model_name)!r} is not one of the published IP-Adapter files it "
                         "knows (the reference's preset table); pick the preprocessor by hand "
                         "(ip-adapter_clip_h, ip-adapter_clip_g, ip-adapter_face_id, ip-adapter_face_id_plus)",
                         field="module")
    return preset.module


LORA_SOURCE = "https://huggingface.co/h94/IP-Adapter-FaceID"


def loads_lora(name: str, prompts: str) -> bool:
    """The prompt has `<lora:name>` or `<lora:name:...>` (A1111's extra-network syntax)."""
    return re.search(rf"<lora:{re.escape(name)}(:[^>]*)?>", prompts) is not None


def lora_note(model_name: str, prompts: str, has_lora: Callable[[str], bool] | None = None) -> str | None:
    """For FaceID files published with a LoRA: a note when the prompt does not load it, or when the host can
    tell whether it has a LoRA of that name (`has_lora`; None when it cannot) and has none."""
    preset = preset_for(model_name)
    if preset is None or preset.lora is None:
        return None
    lora, in_prompt = preset.lora, loads_lora(preset.lora, prompts)
    if has_lora is not None and not has_lora(lora):
        asked = "the prompt loads it but " if in_prompt else ""
        return (f"{preset.model} is published with the LoRA {lora}, and {asked}this host has no LoRA of that name "
                f"(put {lora}.safetensors, from {LORA_SOURCE}, in the WebUI's Lora folder and add <lora:{lora}:0.6> "
                "to the prompt); without it the face is less faithful")
    if in_prompt:
        return None
    return (f"{preset.model} is published with the LoRA {lora}, which the prompt does not load: add "
            f"<lora:{lora}:0.6> to the prompt (A1111's Lora folder must hold {lora}.safetensors, from "
            f"{LORA_SOURCE}); without it the face is less faithful")


def a1111_lora_lookup(networks) -> Callable[[str], bool] | None:
    """`has_lora` for A1111 from its built-in Lora extension's `networks` module (None when it is not loaded):
    a name or alias it lists, else after its own refresh for that name (what it does when a prompt asks for a
    LoRA it has not listed yet, e.g. a file added since start-up)."""
    if networks is None or not isinstance(getattr(networks, "available_networks", None), dict):
        return None

    def listed(name: str) -> bool:
        aliases = getattr(networks, "available_network_aliases", None) or {}
        return name in networks.available_networks or name in aliases

    def has_lora(name: str) -> bool:
        if listed(name):
            return True
        refresh = getattr(networks, "update_available_networks_by_names", None)
        if callable(refresh):
            try:
                refresh([name])
            except Exception:  # its own scan failing is no reason to fail the generation
                return False
        return listed(name)

    return has_lora
