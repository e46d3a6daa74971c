"""The long fuzz of the standalone host: the CI test's strategies (tests/fuzz) with many more requests.

    .venv/bin/python tools/fuzz_api.py --heavy 2000 --light 100    # about 5 minutes on 2 shared cores

Starts the server with the demo model on 127.0.0.1 (a free port, a temporary models folder), sends drawn
requests to every route of its OpenAPI document (clean and mutated; costs bounded as in CI), and prints the
number of payloads, the status histogram per route, and every contract failure (a 5xx, a dropped connection,
a 4xx outside the {detail, error, field} shape) with the request Hypothesis shrank it to. Exit status 1 when
anything failed. Loopback only: nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heavy", type=int, default=400, help="requests per generation/detect/render route")
    parser.add_argument("--light", type=int, default=60, help="requests per other route")
    parser.add_argument("--seed", type=int, default=0, help="Hypothesis seed (the CI test is derandomized)")
    parser.add_argument("--only", default="", help="fuzz only routes whose path contains this text")
    args = parser.parse_args(argv)

    import httpx
    import torch
    import uvicorn

    from standalone.server import ServerConfig, build_app
    from tests.fuzz.harness import HEAVY, fuzz_route
    from tests.fuzz.openapi_strategies import operations

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        app = build_app(ServerConfig(models_dir=Path(tmp)))
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        histogram: Counter = Counter()
        refusals: Counter = Counter()
        failures = []
        started = time.monotonic()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                spec = client.get("/openapi.json").json()
                for method, path in operations(spec):
                    if args.only not in path:
                        continue
                    count = args.heavy if (method, path) in HEAVY else args.light
                    began = time.monotonic()
                    try:
                        fuzz_route(client, spec, method, path, examples=count, histogram=histogram, seed=args.seed,
                                   refusals=refusals)
                        outcome = "ok"
                    except Exception as exc:  # noqa: BLE001 - every failure is reported, then the next route runs
                        failures.append((method, path, exc))
                        outcome = f"FAILED ({type(exc).__name__})"
                    print(f"{method.upper():5} {path:38} {count:5} drawn  {time.monotonic() - began:7.1f} s  {outcome}",
                          flush=True)
                alive = client.get("/sdapi/v1/progress").status_code == 200
        finally:
            server.should_exit = True
            thread.join(timeout=30)

    total = sum(histogram.values())
    print(f"\npayloads sent: {total} in {time.monotonic() - started:.0f} s; server alive afterwards: {alive}")
    statuses = Counter()
    for (_, status), n in histogram.items():
        statuses[status] += n
    print("status histogram (all routes): " + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())))
    for route in sorted({r for r, _ in histogram}):
        counts = ", ".join(f"{s}: {n}" for (r, s), n in sorted(histogram.items()) if r == route)
        print(f"  {route:44} {counts}")
    print("most frequent refusals (route, status, field):")
    for (route, status, field), n in refusals.most_common(15):
        print(f"  {n:5}  {route} {status} {field}")
    for method, path, exc in failures:
        print(f"\nFAILED {method.upper()} {path}:\n{exc}")
    return 1 if failures or not alive else 0


if __name__ == "__main__":
    sys.exit(main())
