"""The IP-Adapter kind: image prompts as extra key/value tokens of every cross-attention.

The runtime model (`IPAdapterModel`) turns what the image encoder gave (CLIP vision embeddings, an
insightface face embedding, or both) into cond and uncond image tokens; the unit (`ip_adapter_unit`) adds
their attention to each attn2 of the UNet through module hooks.

Inputs per image, as the published code feeds them (fp32):

| variant              | cond input                                   | uncond input                                |
|----------------------|----------------------------------------------|---------------------------------------------|
| base / light / vit-G | CLIP `image_embeds`                          | zeros                                       |
| plus, full-face      | CLIP penultimate hidden states               | the same of a zero image (`uncond_...`)      |
| FaceID, portrait     | insightface `normed_embedding`               | zeros                                       |
| FaceID plus (v2)     | face embedding + CLIP hidden states          | zeros + the zero image's hidden states       |
| InstantID            | insightface `embedding` (1 token of 512)     | zeros                                       |
| PuLID                | [antelopev2 embedding, EVA-CLIP embedding],  | zeros, and zero hidden states               |
|                      | EVA-CLIP's five hidden states                |                                             |

What keys cannot tell comes from the file name, as in the reference (§4.1): FaceID plus *v2* adds the face
tokens back (`shortcut`) when the name holds "v2".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from ..errors import IncompatibleModelError, InputError, ModelFileError
from ..models.detection import Detection
from ..models.files import RawModel
from ..models.networks.ip_adapter import FACE_EMBED_DIM, IPAdapterArch, IPAdapterNet
from . import register
from .ip_adapter_unit import IPAdapterUnit

CLIP_NAMES = {1024: "ViT-H (ip-adapter_clip_h)", 1280: "ViT-bigG (ip-adapter_clip_g) or ViT-H hidden states",
              1664: "ViT-bigG hidden states", 768: "ViT-L (clip_vision)"}



class IPAdapterModel:
    kind = "ip_adapter"
    global_average_pooling = False
    depends_on_base = False

    def __init__(self, net: IPAdapterNet, *, family: str, path: Path, format: str, shortcut: bool):
        self.net = net.eval().requires_grad_(False)
        self.family = family
        self.path = path
        self.format = format
        self.shortcut = shortcut  # FaceID plus v2

    def __repr__(self) -> str:
        return f"IPAdapterModel({self.path.name!r}, {self.variant}, family={self.family})"

    @property
    def arch(self) -> IPAdapterArch:
        return self.net.arch

    @property
    def variant(self) -> str:
        return self.arch.variant

    @property
    def num_layers(self) -> int:
        return self.arch.num_layers

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    def to(self, device=None, dtype=None) -> IPAdapterModel:
        # the image projection stays fp32 (tokens are computed once, in fp32, as the reference); the
        # key/value layers follow the placement
        if device is not None and torch.device(device) != self.device:
            self.net.to(device=device)
        if dtype is not None and dtype != self.net.ip_layers.to_k[0].weight.dtype:
            self.net.ip_layers.to(dtype=dtype)
        return self

    def parameter_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.net.parameters())

    def describe(self) -> str:
        a = self.arch
        return (f"{self.kind}, {self.family} ({self.variant}), format {self.format}, {a.num_layers} "
                f"cross-attentions, {a.tokens or 'one per hidden state'} tokens of {a.cross_dim}, "
                f"{sum(p.numel() for p in self.net.parameters()) / 1e6:.1f} M params")

    # --- tokens ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def tokens(self, embedding: Mapping[str, torch.Tensor], *, unit: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(cond, uncond) image tokens [1, T, width] (fp32) for one image's embedding dict."""
        proj = self.net.image_proj
        device = next(proj.parameters()).device

        def get(name: str, what: str) -> torch.Tensor:
            value = embedding.get(name)
            if not isinstance(value, torch.Tensor):
                raise InputError(f"{self.path.name} needs {what} ('{name}'), which the preprocessor output lacks: "
                                 f"{self.expected_module()}", unit=unit, field="module")
            return value.to(device, torch.float32)

        a = self.arch
        if a.variant == "base":
            embeds = get("image_embeds", "CLIP image embeddings")
            self._check_width(embeds, a.input_dim, unit)
            embeds = embeds.reshape(-1, embeds.shape[-1])
            return proj(embeds), proj(torch.zeros_like(embeds))
        if a.variant in ("plus", "full"):
            hidden, uncond = self._hidden(get)
            return proj(hidden), proj(uncond)
        if a.variant == "pulid":
            return self._pulid_tokens(get, unit)
        face = get("face_embed", "an insightface face embedding")
        self._check_width(face, FACE_EMBED_DIM, unit)
        if a.variant == "instant_id":
            face = face.reshape(1, -1, FACE_EMBED_DIM)
            return proj(face), proj(torch.zeros_like(face))
        face = face.reshape(-1, FACE_EMBED_DIM)
        if a.variant == "faceid":
            return proj(face), proj(torch.zeros_like(face))
        hidden, uncond = self._hidden(get)  # faceid_plus
        return (proj(face, hidden, shortcut=self.shortcut),
                proj(torch.zeros_like(face), uncond, shortcut=self.shortcut))

    def _pulid_tokens(self, get, unit: int) -> tuple[torch.Tensor, torch.Tensor]:
        """PuLID: id_cond = [antelopev2 embedding, EVA-CLIP's normed embedding]; uncond: zeros for both and for
        every hidden state (ToTheBeginning/PuLID's `get_id_embedding`)."""
        a = self.arch
        ante = get("id_ante_embedding", "the antelopev2 face embedding")
        vit = get("id_cond_vit", "the EVA-CLIP embedding")
        hidden = get("id_vit_hidden", "EVA-CLIP's hidden states")
        self._check_width(ante, FACE_EMBED_DIM, unit)
        self._check_width(vit, a.input_dim - FACE_EMBED_DIM, unit)
        if hidden.dim() == 3:
            hidden = hidden[:, None]  # [layers, tokens, width]: one image
        if hidden.dim() != 4 or hidden.shape[0] != a.vit_layers or hidden.shape[-1] != a.clip_dim:
            raise IncompatibleModelError(
                f"{self.path.name} maps {a.vit_layers} EVA-CLIP hidden states of {a.clip_dim} values, the "
                f"preprocessor gave {tuple(hidden.shape)} ({self.expected_module()})", unit=unit, field="module")
        id_cond = torch.cat([ante.reshape(-1, FACE_EMBED_DIM), vit.reshape(-1, vit.shape[-1])], dim=-1)
        states = list(hidden.reshape(a.vit_layers, -1, *hidden.shape[-2:]))
        proj = self.net.image_proj
        return proj(id_cond, states), proj(torch.zeros_like(id_cond), [torch.zeros_like(t) for t in states])

    def _hidden(self, get) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = get("penultimate_hidden_state", "CLIP hidden states")
        uncond = get("uncond_penultimate_hidden_state", "the hidden states of a zero image (uncond)")
        width = self.arch.clip_dim if self.arch.projection == "faceid_plus" else self.arch.input_dim
        self._check_width(hidden, width, None)
        return hidden.reshape(1, -1, hidden.shape[-1]), uncond.reshape(1, -1, uncond.shape[-1])

    def _check_width(self, t: torch.Tensor, width: int, unit: int | None) -> None:
        if t.shape[-1] != width:
            got = CLIP_NAMES.get(t.shape[-1], f"{t.shape[-1]} values")
            raise IncompatibleModelError(
                f"{self.path.name} takes inputs of {width} values ({self.expected_module()}), the preprocessor "
                f"gave {t.shape[-1]} ({got})", unit=unit, field="module")

    def expected_module(self) -> str:
        a = self.arch
        if a.variant == "instant_id":
            return "use instant_id_face_embedding"
        if a.variant == "pulid":
            return "use ip-adapter_pulid"
        if a.variant == "faceid":
            return "use ip-adapter_face_id"
        if a.variant == "faceid_plus":
            return "use ip-adapter_face_id_plus"
        if a.variant == "base" and a.input_dim == 1280:
            return "use ip-adapter_clip_g (ViT-bigG)"
        return "use ip-adapter_clip_h (ViT-H)"


def published_shortcut(name: str) -> bool:
    """FaceID plus v2 adds the face tokens to the perceiver's: only the name says so (the reference's rule)."""
    return "v2" in name.lower()


@register("ip_adapter", unit=IPAdapterUnit)
def build_ip_adapter(det: Detection, raw: RawModel, base_unet: Mapping[str, torch.Tensor] | None) -> IPAdapterModel:
    arch: IPAdapterArch = det.arch
    net = IPAdapterNet(arch)
    try:
        net.load_published(raw.state_dict)
    except ModelFileError as e:
        e.message = f"{raw.path.name}: {e.message}"
        raise e.refresh() from None
    except RuntimeError as e:  # a shape that does not fit the architecture the other shapes describe
        raise ModelFileError(f"{raw.path.name}: tensor shapes do not fit an IP-Adapter ({e})") from None
    return IPAdapterModel(net, family=det.family, path=raw.path, format=det.format,
                          shortcut=arch.projection == "faceid_plus" and published_shortcut(raw.path.name))


def average_tokens(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Several images of one unit: their tokens averaged (the reference's `ImageEmbed.average_of`)."""
    conds = [c.mean(dim=0, keepdim=True) if c.shape[0] > 1 else c for c, _ in pairs]
    unconds = [u.mean(dim=0, keepdim=True) if u.shape[0] > 1 else u for _, u in pairs]
    return torch.stack(conds).mean(dim=0), torch.stack(unconds).mean(dim=0)
