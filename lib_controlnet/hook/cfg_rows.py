"""Which rows of each UNet call are cond, for samplers that batch classifier-free guidance.

k-diffusion-style CFG denoisers (A1111's, Forge's, ours) build one denoiser batch per step laid out as
[cond rows ..., uncond rows ...] and hand it to the UNet in consecutive slices: all at once, in chunks of
the batch size (`batch_cond_uncond` off), or without the uncond tail (`s_min_uncond`, "skip early CFG").
Knowing the layout at the start of the step is enough to label every row of every call that follows,
without marking the text conditioning (the reference extension adds a ±1024 token to every prompt, which
other extensions then see).
"""

from __future__ import annotations

from dataclasses import dataclass

from .control_hook import CallInfo


@dataclass
class _Step:
    is_cond: list[bool]
    fraction: float
    hires: bool
    offset: int = 0


class CfgBatchRows:
    """A `CallInfoSource` for `ControlHook`: call `start_step` from the host's per-step callback."""

    def __init__(self) -> None:
        self._step: _Step | None = None

    def start_step(self, n_cond: int, n_uncond: int, *, fraction: float, hires: bool = False) -> None:
        self._step = _Step([True] * n_cond + [False] * n_uncond, fraction, hires)

    def reset(self) -> None:
        self._step = None

    def __call__(self, x, timesteps=None, context=None, y=None) -> CallInfo:
        step = self._step
        if step is None:
            return CallInfo()  # outside any step (another extension calling the UNet): every row is cond
        batch = x.shape[0]
        rows = step.is_cond[step.offset : step.offset + batch]
        if len(rows) != batch:
            # More rows than the step announced: someone else is calling the UNet. Do not guess the halves.
            return CallInfo(fraction=step.fraction, hires=step.hires)
        step.offset += batch
        return CallInfo(
            cond_rows=tuple(i for i, is_cond in enumerate(rows) if is_cond), fraction=step.fraction, hires=step.hires
        )
