"""CLIP vision encoders: the image embeddings IP-Adapter, the T2I style adapter and Revision take.

The published files are transformers' `CLIPVisionModelWithProjection` state dicts (`vision_model.*`,
`visual_projection.weight`; OpenAI's full CLIP file also carries the text tower, which is ignored), so the
runtime is that transformers class (a dependency of both hosts; A1111 1.10 pins transformers 4.30.2, which
has it), built from the shapes in the file:

- clip_h (ViT-H/14, OpenCLIP; width 1280, 32 layers): clip_h.pth, the h94/IP-Adapter image encoder
  (models/image_encoder); used by ip-adapter_clip_h and ip-adapter_clip_sdxl_plus_vith;
- clip_g (ViT-bigG/14, OpenCLIP; 1664, 48): clip_g.pth (lllyasviel/Annotators); ip-adapter_clip_g, revision_*;
- clip_vitl (ViT-L/14, OpenAI; 1024, 24): clip_vitl.pth (openai/clip-vit-large-patch14's pytorch_model.bin);
  clip_vision (t2ia_style_clipvision).

Preprocessing is the reference's: the image (RGBA with the mask as alpha, when given) is resized to 224x224
with area interpolation — no crop —, scaled to [0, 1] and normalised with CLIP's mean and std; a mask
multiplies the normalised pixels by (1 − alpha), so masked pixels count as the mean colour. Embeddings
are float32. The result is a dict of tensors (safe to `torch.load(weights_only=True)` after
/controlnet/detect): `image_embeds` [1, projection], `last_hidden_state` and `penultimate_hidden_state`
[1, 257, width], and `uncond_penultimate_hidden_state`: the same of a zero image, the uncond input of the
IP-Adapters that read hidden states (the reference ships it precomputed for ViT-H instead).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torch import nn

from .runtime import default_models
from .weights import NetSpec, WeightFile

SIZE = 224
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
HEADS = 16  # every published encoder (ViT-L/14, ViT-H/14, ViT-bigG/14)
# OpenAI's ViT-L/14 uses quick_gelu; the OpenCLIP towers (H, bigG) plain gelu
ACTIVATIONS = {"clip_h": "gelu", "clip_g": "gelu", "clip_vitl": "quick_gelu"}
IGNORED = ("text_model.*", "text_projection.weight", "logit_scale", "vision_model.embeddings.position_ids")


def config_from_state(state, hidden_act: str = "gelu"):
    from transformers import CLIPVisionConfig

    width, _, patch, _ = state["vision_model.embeddings.patch_embedding.weight"].shape
    layers = len({k.split(".")[3] for k in state if k.startswith("vision_model.encoder.layers.")})
    positions = state["vision_model.embeddings.position_embedding.weight"].shape[0]
    image_size = int(round(math.sqrt(positions - 1))) * patch
    return CLIPVisionConfig(
        hidden_size=width, intermediate_size=state["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=layers, num_attention_heads=HEADS, patch_size=patch, image_size=image_size,
        projection_dim=state["visual_projection.weight"].shape[0], layer_norm_eps=1e-5,
        hidden_act=hidden_act)


PUBLISHED = {  # (width, intermediate, layers, projection) of each published encoder
    "clip_h": (1280, 5120, 32, 1024), "clip_g": (1664, 8192, 48, 1280), "clip_vitl": (1024, 4096, 24, 768)}


def _builder(name: str):
    def build(state) -> nn.Module:
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        if state is None:  # the published shape (layout checks)
            width, inner, layers, projection = PUBLISHED[name]
            config = CLIPVisionConfig(hidden_size=width, intermediate_size=inner, num_hidden_layers=layers,
                                      num_attention_heads=HEADS, patch_size=14, image_size=SIZE,
                                      projection_dim=projection, layer_norm_eps=1e-5, hidden_act=ACTIVATIONS[name])
        else:
            config = config_from_state(state, ACTIVATIONS[name])
        return CLIPVisionModelWithProjection(config)

    return build


def _spec(name: str, title: str, repo: str, url: str | None = None) -> NetSpec:
    weight = WeightFile((f"{name}.pth", f"{name}.safetensors"), "clip_vision", repo=repo,
                        urls={f"{name}.pth": url} if url else {})
    return NetSpec(title, weight, _builder(name), adapt=dict, ignore=IGNORED)


CLIP_H = _spec("clip_h", "CLIP ViT-H/14 image encoder", "https://huggingface.co/h94/IP-Adapter",
               "https://huggingface.co/h94/IP-Adapter/blob/main/models/image_encoder/model.safetensors")
CLIP_G = _spec("clip_g", "CLIP ViT-bigG/14 image encoder", "https://huggingface.co/lllyasviel/Annotators")
CLIP_VITL = _spec("clip_vitl", "CLIP ViT-L/14 image encoder", "https://huggingface.co/openai/clip-vit-large-patch14",
                  "https://huggingface.co/openai/clip-vit-large-patch14/blob/main/pytorch_model.bin")
ENCODERS = {"clip_h": CLIP_H, "clip_g": CLIP_G, "clip_vitl": CLIP_VITL}


def pixel_values(image: np.ndarray) -> torch.Tensor:
    """HxWx3 or HxWx4 (alpha = mask) uint8 -> [1, 3, 224, 224] normalised CLIP input."""
    resized = cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(np.ascontiguousarray(resized[:, :, :3])).float().div(255.0).permute(2, 0, 1)[None]
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    if resized.shape[2] == 4:  # CLIP mask: what is masked counts as the mean colour
        keep = 1.0 - torch.from_numpy(np.ascontiguousarray(resized[:, :, 3])).float().div(255.0)
        x = x * keep[None, None]
    return x


def encode(net: nn.Module, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    out = net(pixel_values=pixels, output_hidden_states=True)
    return {"image_embeds": out.image_embeds.float().cpu(), "last_hidden_state": out.last_hidden_state.float().cpu(),
            "penultimate_hidden_state": out.hidden_states[-2].float().cpu()}


def uncond_hidden_state(net: nn.Module, device) -> torch.Tensor:
    """The penultimate hidden states of a zero image (all-zero normalised pixels): the uncond input of the
    IP-Adapters that read hidden states (plus, full-face, FaceID plus), as the published code makes it.
    Computed once per loaded encoder."""
    cached = getattr(net, "_cn_uncond_hidden", None)
    if cached is None:
        zeros = torch.zeros(1, 3, net.config.image_size, net.config.image_size, device=device)
        cached = encode(net, zeros)["penultimate_hidden_state"]
        net._cn_uncond_hidden = cached
    return cached


def clip_embedding(image: np.ndarray, encoder: str, models=None) -> dict[str, torch.Tensor]:
    """The embeddings of one image with `encoder` ("clip_h", "clip_g" or "clip_vitl"), plus the uncond
    hidden states (`uncond_penultimate_hidden_state`, see uncond_hidden_state)."""
    models = default_models() if models is None else models
    net = models.get(ENCODERS[encoder])
    with models.running(net) as device, torch.no_grad():
        out = encode(net, pixel_values(image).to(device))
        out["uncond_penultimate_hidden_state"] = uncond_hidden_state(net, device)
        return out
