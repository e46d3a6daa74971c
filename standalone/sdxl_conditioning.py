"""SDXL's second conditioning input `y`: the pooled prompt and the image-size embeddings (2816 = 1280 + 6·256).

sgm's conditioner concatenates, in its embedders' order: OpenCLIP bigG's pooled output, then a 256-wide
sinusoidal embedding (cos half first) of each number of `original_size_as_tuple` (height, width),
`crop_coords_top_left` (top, left) and `target_size_as_tuple` (height, width). A1111 passes the image size as
both sizes and its `sdxl_crop_top/left` options (default 0) as the crop; for the hires pass, the hires size.
"""

from __future__ import annotations

import torch

from lib_controlnet.models.networks.ldm_blocks import timestep_embedding

SIZE_NUMBERS = 6  # original (h, w), crop (top, left), target (h, w)


def size_embed_dim(adm_in_channels: int, pooled_dim: int) -> int:
    """256 for the published model; read from the UNet's label_emb width so reduced models work too."""
    dim, rest = divmod(adm_in_channels - pooled_dim, SIZE_NUMBERS)
    if rest or dim <= 0:
        raise ValueError(f"label_emb takes {adm_in_channels} features, which is not the pooled text ({pooled_dim}) "
                         f"plus {SIZE_NUMBERS} equal size embeddings")
    return dim


def sdxl_vector(pooled: torch.Tensor, adm_in_channels: int, *, original: tuple[int, int],
                target: tuple[int, int], crop: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """[B, adm_in_channels]: pooled [B, P] then the six size embeddings. Sizes are (height, width) in pixels."""
    dim = size_embed_dim(adm_in_channels, pooled.shape[-1])
    numbers = torch.tensor([*original, *crop, *target], dtype=torch.float32, device=pooled.device)
    sizes = timestep_embedding(numbers, dim).reshape(1, -1).expand(pooled.shape[0], -1)
    return torch.cat([pooled, sizes.to(pooled.dtype)], dim=-1)
