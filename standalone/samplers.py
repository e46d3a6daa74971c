"""Sampler names (A1111's) to diffusers schedulers configured with SD1.5's noise schedule.

SD1.x was trained with 1000 steps of a "scaled linear" beta schedule from 0.00085 to 0.012, predicting the
noise (eps). A1111 1.9+ names a sampler and a schedule type separately ("DPM++ 2M" + "Karras"); the older
combined names ("DPM++ 2M Karras") are accepted too. Uniform schedules space the timesteps evenly from 999 to
0 ("linspace"), as k-diffusion does in A1111.

`variance_preserving` says which space the scheduler's latents live in: Euler's are `x0 + σ·ε`
(k-diffusion's), DPM-Solver's are `α·x0 + s·ε` with α = 1/√(1+σ²), s = σ·α. The inpainting blend needs it.
"""

from __future__ import annotations

from dataclasses import dataclass

from lib_controlnet.errors import GENERATION, InputError

SD15_SCHEDULE = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
)

AUTOMATIC, UNIFORM, KARRAS = "Automatic", "Uniform", "Karras"


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    scheduler_class: str  # attribute of `diffusers`
    options: dict
    schedules: dict  # schedule type -> extra options ("Automatic" -> the sampler's default)
    variance_preserving: bool = False
    aliases: tuple[str, ...] = ()

    def make(self, schedule: str = AUTOMATIC):
        import diffusers

        extra = self.schedules.get(schedule)
        if extra is None:
            raise InputError(
                f"sampler '{self.name}' has no '{schedule}' schedule (available: {', '.join(self.schedules)})",
                field="scheduler", subject=GENERATION,
            )
        cls = getattr(diffusers, self.scheduler_class)
        return cls(**SD15_SCHEDULE, **self.options, **extra)


UNIFORM_SPACING = {"timestep_spacing": "linspace"}
KARRAS_SIGMAS = {"use_karras_sigmas": True}

SAMPLERS: tuple[SamplerSpec, ...] = (
    SamplerSpec(
        "Euler", "EulerDiscreteScheduler", {"interpolation_type": "linear"},
        {AUTOMATIC: UNIFORM_SPACING, UNIFORM: UNIFORM_SPACING, KARRAS: {**UNIFORM_SPACING, **KARRAS_SIGMAS}},
        aliases=("k_euler",),
    ),
    SamplerSpec(
        "Euler a", "EulerAncestralDiscreteScheduler", {},
        {AUTOMATIC: UNIFORM_SPACING, UNIFORM: UNIFORM_SPACING},
        aliases=("k_euler_a", "Euler Ancestral"),
    ),
    SamplerSpec(
        "DPM++ 2M", "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "final_sigmas_type": "zero"},
        {AUTOMATIC: KARRAS_SIGMAS, KARRAS: KARRAS_SIGMAS, UNIFORM: UNIFORM_SPACING},  # A1111: Automatic is Karras
        variance_preserving=True,
        aliases=("k_dpmpp_2m",),
    ),
)

_SCHEDULE_SUFFIXES = {" karras": KARRAS}


def sampler_names() -> list[str]:
    """What the host lists (A1111's /sdapi/v1/samplers): the names and the legacy Karras combination."""
    return [s.name for s in SAMPLERS] + ["DPM++ 2M Karras"]


def resolve_sampler(name: str | None, schedule: str | None = None) -> tuple[SamplerSpec, str]:
    """(spec, schedule type) for a sampler name, with or without a legacy ' Karras' suffix."""
    wanted = (name or "Euler").strip()  # the A1111 API's default sampler_index
    schedule = (schedule or AUTOMATIC).strip()
    lowered = wanted.lower()
    for suffix, implied in _SCHEDULE_SUFFIXES.items():
        if lowered.endswith(suffix):
            wanted, lowered = wanted[: -len(suffix)], lowered[: -len(suffix)]
            if schedule.lower() == AUTOMATIC.lower():
                schedule = implied
    schedule = next((s for s in (AUTOMATIC, UNIFORM, KARRAS) if s.lower() == schedule.lower()), schedule)
    for spec in SAMPLERS:
        if lowered in (spec.name.lower(), *(a.lower() for a in spec.aliases)):
            return spec, schedule
    # the names /sdapi/v1/samplers lists (the legacy "<name> Karras" spellings are accepted, not listed)
    raise InputError(
        f"sampler '{name}' is not available in the standalone host (available: "
        f"{', '.join(s.name for s in SAMPLERS)}; an older name with ' Karras' picks the Karras schedule)",
        field="sampler_name", subject=GENERATION,
    )
