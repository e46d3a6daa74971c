"""Prompts to UNet context the A1111 way: emphasis, 75-token chunks, CLIP skip, one or two text encoders.

Each prompt is tokenized without length limit and cut into chunks of 75 tokens; each chunk becomes
`[start] + tokens + [end] * (pad to 76)` (77 ids), is encoded alone, and the chunk encodings are concatenated
along the token axis (77·k tokens). Like A1111: a chunk boundary moves back to just after a comma found within
the last 20 tokens, `BREAK` starts a new chunk, prompts of one batch are padded with empty chunks to the same
count, and emphasis multiplies each token's vector by its weight and then restores the chunk's mean
(A1111's "Original" emphasis mode). Textual-inversion embeddings are not supported.

Each family's text encoders ("towers") see the same chunks; what differs is A1111's per-encoder rule:
- SD1.x CLIP ViT-L: the last layer (CLIP skip n > 1: the n-th last, through the final norm), end-token padding;
- SD2.x OpenCLIP ViT-H: the penultimate layer through the final norm, ids after the first end token set to 0
  (open_clip's pad); CLIP skip does not apply (A1111 ignores it for open_clip);
- SDXL: CLIP ViT-L's penultimate layer without the final norm (`layer: hidden, layer_idx: 11`) and bigG's
  penultimate layer without it (`layer: penultimate`), concatenated to 768 + 1280 = 2048 features, plus bigG's
  pooled output (final norm of the last layer at the end token, through the text projection) of each prompt's
  first chunk. Emphasis is applied to each encoder's output separately, as A1111 does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .prompt_parser import BREAK, parse_emphasis

CHUNK = 75
COMMA_BACKTRACK = 20  # A1111's "comma_padding_backtrack" default


@dataclass
class Chunk:
    ids: list[int]  # 77: start, 75 tokens (end-padded), end
    weights: list[float]


LAST, PENULTIMATE, PENULTIMATE_NORMED = "last", "penultimate", "penultimate_normed"


@dataclass
class TextTower:
    """One text encoder and A1111's rules for it."""

    model: nn.Module  # transformers CLIPTextModel, or CLIPTextModelWithProjection when `pooled`
    layer: str = LAST  # LAST honours CLIP skip; the penultimate choices are fixed by the family
    pad_with_zero: bool = False  # open_clip pads with id 0 after the end token
    pooled: bool = False  # this tower gives the pooled (projected) prompt vector


@dataclass
class Conditioning:
    context: torch.Tensor  # [B, 77·k, features]
    pooled: torch.Tensor | None = None  # [B, projection] (SDXL), first chunk of each prompt


class PromptEncoder:
    def __init__(self, text_model, tokenizer, towers: list[TextTower] | None = None):
        self.towers = towers or [TextTower(text_model)]
        self.model = self.towers[0].model
        self.tokenizer = tokenizer
        self.start = tokenizer.convert_tokens_to_ids("<|startoftext|>")
        self.end = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        self.comma = tokenizer.convert_tokens_to_ids(",</w>")

    # --- tokens ------------------------------------------------------------------------------------------
    def _finish(self, ids: list[int], weights: list[float]) -> Chunk:
        pad = CHUNK - len(ids)
        return Chunk([self.start, *ids, *[self.end] * pad, self.end], [1.0, *weights, *[1.0] * pad, 1.0])

    def chunks(self, prompt: str) -> list[Chunk]:
        out: list[Chunk] = []
        ids: list[int] = []
        weights: list[float] = []
        last_comma = -1

        def flush():
            nonlocal ids, weights, last_comma
            out.append(self._finish(ids, weights))
            ids, weights, last_comma = [], [], -1

        for text, weight in parse_emphasis(prompt):
            if text == BREAK and weight == -1:
                flush()
                continue
            for token in self.tokenizer(text, add_special_tokens=False)["input_ids"]:
                if token == self.comma:
                    last_comma = len(ids)
                elif len(ids) == CHUNK and last_comma != -1 and len(ids) - last_comma <= COMMA_BACKTRACK:
                    # move the words after the last comma into the next chunk rather than cutting a phrase
                    cut = last_comma + 1
                    carry_ids, carry_weights = ids[cut:], weights[cut:]
                    ids, weights = ids[:cut], weights[:cut]
                    flush()
                    ids, weights = carry_ids, carry_weights
                if len(ids) == CHUNK:
                    flush()
                ids.append(token)
                weights.append(weight)
        if ids or not out:
            flush()
        return out

    def empty_chunk(self) -> Chunk:
        return self._finish([], [])

    # --- vectors -----------------------------------------------------------------------------------------
    @property
    def uses_clip_skip(self) -> bool:
        return any(t.layer == LAST for t in self.towers)

    @torch.no_grad()
    def encode(self, prompts: list[str], clip_skip: int = 1) -> torch.Tensor:
        """[len(prompts), 77·k, features] in the text model's dtype, on its device."""
        return self.encode_with_pooled(prompts, clip_skip).context

    @torch.no_grad()
    def encode_with_pooled(self, prompts: list[str], clip_skip: int = 1) -> Conditioning:
        per_prompt = [self.chunks(p) for p in prompts]
        count = max(len(c) for c in per_prompt)
        encoded, pooled = [], None
        for i in range(count):
            batch = [c[i] if i < len(c) else self.empty_chunk() for c in per_prompt]
            parts = [self._encode_chunks(tower, batch, clip_skip) for tower in self.towers]
            encoded.append(torch.cat([z for z, _ in parts], dim=-1))
            if i == 0:
                pooled = next((p for _, p in parts if p is not None), None)
        return Conditioning(torch.cat(encoded, dim=1), pooled)

    def _encode_chunks(self, tower: TextTower, chunks: list[Chunk], clip_skip: int):
        model = tower.model
        device = model.device
        ids = torch.tensor([c.ids for c in chunks], device=device)
        if tower.pad_with_zero:
            # A1111's process_tokens for open_clip: every id after the first end token becomes the pad id 0
            is_end = (ids == self.end).int()
            ids = ids.masked_fill(is_end.cumsum(dim=1) - is_end > 0, 0)
        wants_hidden = tower.layer != LAST or clip_skip > 1
        out = model(input_ids=ids, output_hidden_states=wants_hidden)
        text_model = model.text_model
        if tower.layer == PENULTIMATE:
            z = out.hidden_states[-2]
        elif tower.layer == PENULTIMATE_NORMED:
            z = text_model.final_layer_norm(out.hidden_states[-2])
        elif clip_skip > 1:
            # CLIP skip n > 1: the n-th last layer's output, through the final norm (as A1111)
            z = text_model.final_layer_norm(out.hidden_states[-clip_skip])
        else:
            z = out.last_hidden_state
        pooled = out.text_embeds if tower.pooled else None
        weights = torch.tensor([c.weights for c in chunks], device=device, dtype=z.dtype)
        if bool((weights != 1).any()):
            mean_before = z.mean()
            z = z * weights.unsqueeze(-1)
            z = z * (mean_before / z.mean())
        return z, pooled


def pad_to_same_length(a: torch.Tensor, b: torch.Tensor, empty: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cond and uncond of different chunk counts: append the empty prompt's encoding to the shorter one.

    (A1111's "pad prompt/negative prompt" behaviour; it lets both go through the UNet in one batch.)
    """

    def pad(t: torch.Tensor, length: int) -> torch.Tensor:
        missing = (length - t.shape[1]) // empty.shape[1]
        if missing <= 0:
            return t
        return torch.cat([t, empty.expand(t.shape[0], -1, -1).repeat(1, missing, 1)], dim=1)

    length = max(a.shape[1], b.shape[1])
    return pad(a, length), pad(b, length)
