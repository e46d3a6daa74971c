"""What the rig's probe extension (tools/a1111_rig_probe) tells about the WebUI's loaded model, and the check
that a request left it exactly as it was: no hook, no replaced forward or module, no attribute added, no
weight written, no global hook or patched torch function.

Against a WebUI without the probe (not the rig), the check skips, which A1111_REQUIRE=1 makes a failure.
"""

from __future__ import annotations

import pytest

from tests.a1111.test_api_a1111 import get, ok_json, post

ROUTE = "/cn-rig/model_state"


def model_state() -> dict:
    resp = get(ROUTE)
    if resp.status_code == 404:
        pytest.skip(f"no {ROUTE} (the probe extension tools/a1111_rig_probe is installed by tools/a1111_rig.sh)")
    return ok_json(resp)


def differences(before: dict, after: dict, limit: int = 12) -> list[str]:
    found = []
    if before["model"] != after["model"]:
        found.append(f"the loaded model changed: {before['model']} -> {after['model']}")
    for section in ("modules", "weights"):
        a, b = before[section], after[section]
        for name in sorted(set(a) | set(b)):
            if name not in b:
                found.append(f"{section[:-1]} {name!r} is gone")
            elif name not in a:
                found.append(f"{section[:-1]} {name!r} is new: {b[name]}")
            elif a[name] != b[name]:
                if section == "modules":
                    fields = {k: (a[name].get(k), b[name].get(k)) for k in set(a[name]) | set(b[name])
                              if a[name].get(k) != b[name].get(k)}
                    found.append(f"module {name!r}: {fields}")
                else:
                    found.append(f"weight {name!r}: {a[name]} -> {b[name]}")
    for section in ("global_hooks", "functions"):
        if before[section] != after[section]:
            found.append(f"{section}: {before[section]} -> {after[section]}")
    return found[:limit] + ([f"... and {len(found) - limit} more"] if len(found) > limit else [])


def assert_as_before(before: dict, what: str) -> None:
    found = differences(before, model_state())
    assert not found, f"after {what} the model is not as it was:\n" + "\n".join(found)


def live_objects() -> dict:
    """Our per-request objects alive in the WebUI right now, and the host-UNet bytes they refer to."""
    resp = get("/cn-rig/live")
    if resp.status_code == 404:
        pytest.skip("no /cn-rig/live (the probe extension tools/a1111_rig_probe is installed by tools/a1111_rig.sh)")
    return ok_json(resp)


def trim() -> dict:
    """malloc_trim(0) in the WebUI: the memory freed since goes back to the system. RSS before and after."""
    resp = post("/cn-rig/trim", {})
    if resp.status_code == 404:
        pytest.skip("no /cn-rig/trim (the probe extension tools/a1111_rig_probe is installed by tools/a1111_rig.sh)")
    return ok_json(resp)
