"""`ipadapter_input`: precomputed IP-Adapter embeddings sent through the API (the reference's field).

Each item is the base64 text of a `torch.save` blob, e.g. a `/controlnet/detect` "tensor" of an
ip-adapter module: a dict of tensors (our detect output), or a plain tensor of 512 values (an insightface
face embedding, as the reference's face modules save it). It is read with `torch.load(weights_only=True)`
only: a blob that needs code to unpickle (the reference's own CLIP blobs pickle a transformers class) is
refused with a 422 naming the item, and nothing in it runs.
"""

from __future__ import annotations

import base64
import binascii
import io
import pickle

import torch

from ..errors import InputError
from ..models.files import load_weights_only

FACE_EMBED_DIM = 512


def decode_ipadapter_input(value, *, unit: int | None = None) -> list[dict[str, torch.Tensor]]:
    items = [value] if isinstance(value, str) else list(value)
    return [_decode(item, unit, f"ipadapter_input[{i}]") for i, item in enumerate(items)]


def _decode(text: str, unit, field: str) -> dict[str, torch.Tensor]:
    try:
        raw = base64.b64decode(text.split(",", 1)[1] if text.startswith("data:") else text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"not base64 ({exc})", unit=unit, field=field) from None
    try:
        obj = load_weights_only(io.BytesIO(raw), map_location="cpu")  # not the host's torch.load (A1111's)
    except pickle.UnpicklingError as exc:
        raise InputError("refused: the blob needs arbitrary code to unpickle (only tensors and dicts of tensors "
                         "are read; send the 'tensor' of /controlnet/detect). Detail: "
                         f"{str(exc).splitlines()[0]}", unit=unit, field=field) from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise InputError(f"not a torch.save blob ({exc})", unit=unit, field=field) from None
    if isinstance(obj, torch.Tensor):
        if obj.shape[-1] != FACE_EMBED_DIM:
            raise InputError(f"a plain tensor must be a {FACE_EMBED_DIM}-value face embedding, got shape "
                             f"{tuple(obj.shape)}; send a dict of tensors for CLIP embeddings", unit=unit, field=field)
        return face_embedding(obj)
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                       for k, v in obj.items()):
        raise InputError(f"must hold a tensor or a dict of named tensors, got {type(obj).__name__}",
                         unit=unit, field=field)
    return {k: v.float() for k, v in obj.items()}


def face_embedding(tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    """A plain face embedding (what ip-adapter_face_id and instant_id_face_embedding return, in the reference's
    shapes [1, 512] and [512]) as the embedding dict the IP-Adapter reads."""
    return {"face_embed": tensor.float().reshape(-1, FACE_EMBED_DIM)}
