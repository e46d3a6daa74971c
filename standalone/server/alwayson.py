"""`alwayson_scripts` -> ControlNet units, as A1111 + the A1111 adapter read them.

A1111 matches each key case-insensitively against the always-on scripts' titles and refuses an unknown one
(422 "always on script <name> not found"); here the only always-on script is ControlNet. Each entry of
`args` is a unit (a dict with the reference's fields and every legacy alias, parsed by `Unit.from_dict`);
a null entry is an empty slot. Units keep their position, so errors name the index the client sent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import HTTPException

from lib_controlnet.errors import InputError
from lib_controlnet.preprocessors import Registry
from lib_controlnet.units.unit import Unit

logger = logging.getLogger("standalone.server")
SCRIPT_TITLE = "ControlNet"
ARGS_FIELD = "alwayson_scripts.controlnet.args"


def controlnet_units(alwayson: Mapping | None, preprocessors: Registry, slots: int) -> tuple[list[Unit], list[str]]:
    """(units in request order, notes about their payload worth passing on)."""
    if not alwayson:
        return [], []
    if not isinstance(alwayson, Mapping):
        raise InputError("alwayson_scripts must be an object", field="alwayson_scripts")
    script = None
    for name, value in alwayson.items():
        if str(name).lower() != SCRIPT_TITLE.lower():
            raise HTTPException(status_code=422, detail=f"always on script {name} not found")
        script = value
    if not isinstance(script, Mapping):
        raise InputError('must be an object such as {"args": [unit, ...]}', field="alwayson_scripts.controlnet")
    args = script.get("args", [])
    if not isinstance(args, (list, tuple)):
        raise InputError(f"must be a list of units, got {type(args).__name__}", field=ARGS_FIELD)
    if len(args) > slots:
        # A1111 would drop the units beyond its script's slots and generate without them
        raise InputError(f"{len(args)} units sent; this server takes at most {slots}", field=ARGS_FIELD)
    units, notes = [], []
    for index, arg in enumerate(args):
        unit = Unit() if arg is None else Unit.from_dict(arg, index=index, is_known_module=preprocessors.__contains__)
        for note in unit.warnings():
            logger.warning("ControlNet unit %d: %s", index, note)
            notes.append(f"ControlNet unit {index}: {note}")
        units.append(unit)
    return units, notes
