"""A1111 reads this before parsing the command line: the extension's flags (--controlnet-dir, ...).

A1111 runs it before it puts extension folders on sys.path, so the settings table (plain Python, no
imports of ours) is loaded from its file rather than imported as `lib_controlnet.settings`.
"""

import importlib.util
import sys
from pathlib import Path

_SETTINGS = Path(__file__).resolve().parent / "lib_controlnet" / "settings.py"


def preload(parser):
    spec = importlib.util.spec_from_file_location("controlnet_settings_table", _SETTINGS)
    table = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = table  # dataclasses look their module up there
    spec.loader.exec_module(table)
    table.add_flags(parser)
