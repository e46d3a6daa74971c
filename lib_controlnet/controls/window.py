"""When a control acts: the unit's start/end window and hires-fix option, as for any unit."""

from __future__ import annotations

from dataclasses import dataclass

from ..enums import HiResFixOption
from ..hook.call import CallInfo
from . import ControlRequest


@dataclass(frozen=True)
class Window:
    start: float = 0.0
    end: float = 1.0
    hr_option: HiResFixOption = HiResFixOption.BOTH

    @classmethod
    def of(cls, request: ControlRequest) -> Window:
        return cls(request.guidance_start, request.guidance_end, request.hr_option)

    def contains(self, info: CallInfo) -> bool:
        """The reference's rule: stopped when fraction < start or fraction > end (strict), per pass."""
        if info.fraction < self.start or info.fraction > self.end:
            return False
        if self.hr_option == HiResFixOption.LOW_RES_ONLY and info.hires:
            return False
        return not (self.hr_option == HiResFixOption.HIGH_RES_ONLY and not info.hires)


def blend_weight(weight: float) -> float:
    """Corrections blend their result with the UNet's by clamp(weight, 0, 1), as the reference."""
    return max(0.0, min(1.0, float(weight)))
