"""One UNet call as the hook sees it: what the host says about it, and what the units add to it.

`CallInfo` comes from the host (which rows are cond, how far sampling is). `UNetCall` is built fresh for
every call; effects (`effect.Effect`) write into it and the hook's module hooks read from it while the
UNet's own forward runs:

- `residuals[i]`: added to the skip connection from input block i (the last one: the middle block's output);
- `features[b]`: added to the encoder stream right after input block b (`MIDDLE`: after the middle block);
- `context`, `y`: the text context and vector conditioning the UNet and the ControlNets see (effects may
  append tokens, or replace either);
- `corrections`: functions applied in order to the UNet's output.

Row rules: a contribution computed for some rows only (`rows`) is scattered into a full-batch tensor
with zeros elsewhere, so an uncond row that a unit must not touch gets exactly nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from ..memory import Placement
    from .host import HostInfo

MIDDLE = -1  # `features` key for "after the middle block" (T2I-Adapter SDXL's 4th feature)


@dataclass(frozen=True)
class CallInfo:
    """What the host knows about one UNet call.

    cond_rows: batch rows that carry the positive prompt; None when unknown (then every row is treated
        as cond, as the reference does for unmarked calls).
    fraction: sampling progress of this pass in [0, 1] (the reference: sampling_step / sampling_steps).
    hires: whether this is the hires-fix pass.
    context: a replacement text context for the UNet, for hosts that mark rows inside it.
    """

    cond_rows: tuple[int, ...] | None = None
    fraction: float = 0.0
    hires: bool = False
    context: torch.Tensor | None = None


CallInfoSource = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None", "torch.Tensor | None"], CallInfo]


def scatter_rows(value: torch.Tensor, rows: tuple[int, ...] | None, batch: int) -> torch.Tensor:
    """A tensor computed for `rows` only, as a full batch with zeros in the other rows."""
    if rows is None:
        return value
    full = value.new_zeros((batch, *value.shape[1:]))
    full[list(rows)] = value
    return full


def align_to(base: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """`value` resized (nearest, as the reference) to `base`'s spatial size, unless it is 1x1 (pooled) or a
    lower-dimensional value that broadcasts."""
    if value.ndim == base.ndim and value.shape[-2:] != base.shape[-2:] and value.shape[-2:] != (1, 1):
        value = F.interpolate(value, size=base.shape[-2:], mode="nearest")
    return value.to(base.dtype)


class UNetCall:
    def __init__(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor | None,
        y: torch.Tensor | None,
        info: CallInfo,
        *,
        num_outputs: int,
        placement: Placement | None = None,
        host: HostInfo | None = None,
    ):
        self.x, self.timesteps, self.context, self.y = x, timesteps, context, y
        self.info = info
        self.placement = placement
        self.host = host
        self.residuals: list[torch.Tensor | None] = [None] * num_outputs
        self.features: dict[int, torch.Tensor] = {}
        self.corrections: list[Callable[[torch.Tensor, UNetCall], torch.Tensor]] = []
        self.context_edited = False
        self.y_edited = False
        self.scratch: dict[str, object] = {}  # per-call notes effects of one kind share (e.g. Revision's sum)

    @classmethod
    def empty(cls, num_outputs: int) -> UNetCall:
        """A call nothing is added to (a nested call made with effects suspended, or before setup)."""
        return cls(torch.empty(0), torch.empty(0), None, None, CallInfo(), num_outputs=num_outputs)

    @property
    def batch(self) -> int:
        return self.x.shape[0]

    # --- rows --------------------------------------------------------------------------------------------
    def rows(self, cond_only: bool) -> tuple[int, ...] | None:
        """The rows a unit works on: None for all of them, the cond rows for a cond-only unit (possibly
        empty: an uncond-only call, where such a unit has nothing to do)."""
        rows = self.info.cond_rows
        if not cond_only or rows is None or len(rows) == self.batch:
            return None
        return tuple(rows)

    def pick(self, t: torch.Tensor | None, rows: tuple[int, ...] | None) -> torch.Tensor | None:
        return t if t is None or rows is None else t[list(rows)]

    # --- what units add ----------------------------------------------------------------------------------
    def add_residual(self, index: int, value: torch.Tensor, rows: tuple[int, ...] | None = None) -> None:
        value = scatter_rows(value, rows, self.batch)
        current = self.residuals[index]
        self.residuals[index] = value if current is None else current + value

    def add_feature(self, block: int, value: torch.Tensor, rows: tuple[int, ...] | None = None) -> None:
        """Add to the encoder stream after input block `block` (or `MIDDLE`), before its skip is kept."""
        value = scatter_rows(value, rows, self.batch)
        current = self.features.get(block)
        self.features[block] = value if current is None else current + value

    def append_context(self, tokens: torch.Tensor, rows: tuple[int, ...] | None = None) -> None:
        """Append tokens [1 or len(rows), T, C] to the text context of `rows`; the other rows get zero
        tokens (the reference multiplies them by its cond mark), so every row keeps the same length."""
        if self.context is None:
            raise ValueError("this UNet call has no text context to append tokens to")
        n = self.batch if rows is None else len(rows)
        tokens = tokens.to(self.context.device, self.context.dtype).expand(n, -1, -1)
        tokens = scatter_rows(tokens, rows, self.batch)
        self.context = torch.cat([self.context, tokens], dim=1)
        self.context_edited = True

    def replace_context(self, context: torch.Tensor) -> None:
        """A new text context for the UNet and every unit (Revision's "ignore prompt" zeroes it)."""
        self.context = context
        self.context_edited = True

    def replace_y(self, y: torch.Tensor) -> None:
        """A new class/vector conditioning `y` (SDXL: pooled text and size embeddings) for the UNet and units."""
        self.y = y
        self.y_edited = True

    def correct_output(self, fn: Callable[[torch.Tensor, UNetCall], torch.Tensor]) -> None:
        """`fn(output, call) -> output`, applied after the UNet's forward (post-UNet corrections)."""
        self.corrections.append(fn)
