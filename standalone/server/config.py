"""What the server is started with: where the models are, which checkpoint, the ControlNet settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib_controlnet import settings as cn_settings

from ..paths import DEFAULT_MODELS_DIR

# Units one request may carry: the A1111 adapter's API slots (scripts/controlnet.py). A1111 silently drops
# units beyond the slots; here a request with more is refused instead (no image made without a unit).
UNIT_SLOTS = 10


@dataclass
class ServerConfig:
    models_dir: Path = DEFAULT_MODELS_DIR
    ckpt: Path | None = None  # None: the first usable checkpoint in models/Stable-diffusion, else the toy model
    demo: str | None = None  # serve this demo ("toy": the embedded one; "sd15", "sdxl": random weights) whatever
    # else there is
    options: dict[str, Any] = field(default_factory=dict)  # ControlNet settings (lib_controlnet.settings keys)
    controlnet_dirs: tuple[Path, ...] = ()  # extra ControlNet model folders (--controlnet-dir)
    unit_slots: int = UNIT_SLOTS
    api_auth: dict[str, str] = field(default_factory=dict)  # user -> password (--api-auth); empty: no auth

    def __post_init__(self):
        self.models_dir = Path(self.models_dir)
        self.ckpt = Path(self.ckpt) if self.ckpt is not None else None
        unknown = sorted(set(self.options) - set(cn_settings.SETTINGS_BY_KEY))
        if unknown:
            raise ValueError(f"unknown ControlNet settings: {', '.join(unknown)}")

    def option(self, key: str, overrides: Mapping[str, Any] | None = None) -> Any:
        """A ControlNet setting: the request's override_settings first, then the server's, then the default."""
        if overrides and key in overrides:
            return cn_settings.read(overrides, key)
        return cn_settings.read(self.options, key)
