"""Server CPU per request with ``/metrics`` on and off: an A/B in one run, rounds interleaved.

Usage: ``.venv/bin/python bench/metrics_cost.py [--requests 2000] [--rounds 3] [--workers 1]``.
Starts two ``chunkd serve --no-auth`` processes (``--metrics off`` and ``--metrics public``, otherwise the
defaults: durable, SQLite, local files), then per round and per server sends ``--requests`` tus PATCHes of
64 KiB on one keep-alive connection, then as many tus HEADs, reading the servers' CPU time (user + system
of the server process and its workers, ``/proc``) before and after each batch. Prints one JSON line per
round and a summary: median CPU µs per request for each server and the difference. With ``--workers 2``
the metrics server counts in prometheus-client's multiprocess mode (memory-mapped files).

``--micro`` measures in-process instead what the middleware and the engine's reports add to one PATCH
(``PROMETHEUS_MULTIPROC_DIR=$(mktemp -d) ... --micro`` for the multiprocess mode).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.local_server import start_chunkd

CHUNK = 64 * 1024
TUS = {"Tus-Resumable": "1.0.0"}
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its live children (uvicorn's workers)."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out.extend(int(c) for c in text)
    return out


def run_round(url: str, pid: int, n: int) -> dict[str, float]:
    payload = os.urandom(CHUNK)
    with httpx.Client(base_url=url, timeout=60) as c:
        r = c.post("/files/", headers={**TUS, "Upload-Length": str(n * CHUNK)})
        r.raise_for_status()
        upload = r.headers["location"]
        before = cpu_seconds(pid)
        for i in range(n):
            r = c.patch(upload, content=payload, headers={**TUS, "Upload-Offset": str(i * CHUNK),
                                                          "Content-Type": "application/offset+octet-stream"})
            assert r.status_code == 204, r.text
        middle = cpu_seconds(pid)
        for _ in range(n):
            assert c.head(upload, headers=TUS).status_code == 200
        after = cpu_seconds(pid)
    return {"patch_us": (middle - before) / n * 1e6, "head_us": (after - middle) / n * 1e6}


def micro(n: int) -> dict[str, float]:
    """In this process: CPU µs the metrics add to one tus PATCH -- the middleware around a do-nothing ASGI
    app versus the bare app, plus the engine's reports of one chunk (write, flush). Precise where the
    server A/B is not (its noise is ± tens of µs on a shared machine)."""
    import asyncio
    import time

    from chunkd.server.metrics import EngineMetrics, Families, MetricsMiddleware

    class Route:
        path = "/{upload_id}"

    route = Route()

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        scope["route"] = route
        await receive()  # type: ignore[operator]
        await send({"type": "http.response.start", "status": 204, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    body = {"type": "http.request", "body": b"x" * CHUNK, "more_body": False}

    async def receive() -> dict[str, object]:
        return body

    async def send(message: object) -> None:
        return None

    wrapped = MetricsMiddleware(app, Families("chunkd"))  # type: ignore[arg-type]
    stats = EngineMetrics()

    async def loop(target: object, report: bool) -> float:
        start = time.process_time()
        for _ in range(n):
            scope = {"type": "http", "path": "/files/0123456789abcdef", "method": "PATCH", "query_string": b""}
            await target(scope, receive, send)  # type: ignore[operator]
            if report:
                stats.write("tus", CHUNK, 0, 0.003)
                stats.flush(0.001)
        return (time.process_time() - start) / n * 1e6

    async def both() -> dict[str, float]:
        bare = min([await loop(app, False) for _ in range(3)])
        measured = min([await loop(wrapped, True) for _ in range(3)])
        return {"bare_us": round(bare, 2), "with_metrics_us": round(measured, 2),
                "added_us": round(measured - bare, 2)}

    return asyncio.run(both())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--micro", action="store_true", help="only the in-process measurement (no servers); "
                        "set PROMETHEUS_MULTIPROC_DIR to an empty directory to measure multiprocess mode")
    args = parser.parse_args()
    if args.micro:
        mode = "multiprocess" if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else "single"
        print(json.dumps({"micro": mode, "requests": args.requests * 10, **micro(args.requests * 10)}))
        return
    with tempfile.TemporaryDirectory(prefix="chunkd-metrics-bench-") as tmp:
        servers = {}
        for mode in ("off", "public"):
            proc, url = start_chunkd(Path(tmp) / mode, "--no-auth", "--metrics", mode, "--workers", str(args.workers))
            servers[mode] = (proc, url)
        results: dict[str, list[dict[str, float]]] = {"off": [], "public": []}
        try:
            for r in range(args.rounds):
                order = ("off", "public") if r % 2 == 0 else ("public", "off")
                for mode in order:
                    proc, url = servers[mode]
                    got = run_round(url, proc.pid, args.requests)
                    results[mode].append(got)
                    print(json.dumps({"round": r, "metrics": mode, **{k: round(v, 1) for k, v in got.items()}}))
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(20)
    summary: dict[str, object] = {"requests": args.requests, "rounds": args.rounds, "workers": args.workers}
    for kind in ("patch_us", "head_us"):
        off = statistics.median(x[kind] for x in results["off"])
        on = statistics.median(x[kind] for x in results["public"])
        summary[kind] = {"off": round(off, 1), "on": round(on, 1), "delta": round(on - off, 1)}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
