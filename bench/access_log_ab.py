"""What ``--access-log`` costs per request: two chunkd processes, one with it and one without, driven alternately.

Usage: ``.venv/bin/python bench/access_log_ab.py [--requests 2000] [--rounds 5] [--chunk 1024]``.
Both servers run ``--no-durable`` (so a fsync does not hide the difference) with their stderr in a file, as a
deployment would have it. Each round sends ``--requests`` tus ``HEAD`` requests, then as many ``PATCH``
requests of ``--chunk`` bytes, over one keep-alive connection to each server in turn (the order alternates).
Prints one JSON line per kind: median wall time per request and server CPU per request (utime + stime from
/proc) for each server, and the differences.

``--inproc`` measures the same in one process instead, without HTTP, sockets or a second process competing for
the CPU: the real chunkd app twice (access log off and on, the log in a file) called directly through ASGI with
tus ``HEAD`` requests, alternating rounds, thread CPU time per request. On a shared machine this is the figure
to trust; the two-server one shows that the end-to-end difference is within that run's noise or not.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.local_server import CHUNKD, free_port, token_for
from bench.object_store_section import cpu_seconds

TUS = {"Tus-Resumable": "1.0.0"}


class Target:
    def __init__(self, name: str, work: Path, *args: str) -> None:
        self.name, self.port = name, free_port()
        self.data = work / name
        self.log = open(work / f"{name}.log", "wb")  # noqa: SIM115 - open for the process's lifetime
        self.proc = subprocess.Popen([*CHUNKD, "serve", "--port", str(self.port), "--data-dir", str(self.data),
                                      "--no-durable", *args], stdout=self.log, stderr=self.log)
        self.url = f"http://127.0.0.1:{self.port}"
        for _ in range(600):
            try:
                httpx.get(self.url + "/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        self.client = httpx.Client(headers={"Authorization": f"Bearer {token_for(self.data)}", **TUS})
        made = self.client.post(self.url + "/files/", headers={"Upload-Length": str(1 << 40)})
        self.upload = self.url + made.headers["Location"] if made.headers["Location"].startswith("/") \
            else made.headers["Location"]
        self.offset = 0

    def run(self, kind: str, n: int, chunk: bytes) -> tuple[float, float]:
        """(wall seconds, server CPU seconds) per request for ``n`` requests of ``kind``."""
        cpu0, t0 = cpu_seconds(self.proc.pid), time.perf_counter()
        for _ in range(n):
            if kind == "HEAD":
                r = self.client.head(self.upload)
            else:
                r = self.client.patch(self.upload, content=chunk, headers={
                    "Upload-Offset": str(self.offset), "Content-Type": "application/offset+octet-stream"})
                self.offset += len(chunk)
            assert r.status_code in (200, 204), r.status_code
        return (time.perf_counter() - t0) / n, (cpu_seconds(self.proc.pid) - cpu0) / n

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(20)
        self.log.close()


async def _inproc(requests: int, rounds: int) -> None:
    import logging.config

    from chunkd.server.app import create_app
    from chunkd.server.logs import log_config
    from chunkd.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        logging.config.dictConfig(log_config("info", "text", True))
        handler = logging.getLogger("chunkd").handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(open(work / "access.log", "w"))  # noqa: SIM115 - closed with the directory
        apps = {}
        for name in ("off", "on"):
            apps[name] = create_app(Settings(data_dir=work / name, no_auth=True, durable=False,
                                             access_log=name == "on", sweep_interval=3600))
        async with apps["off"].router.lifespan_context(apps["off"]), \
                apps["on"].router.lifespan_context(apps["on"]):
            paths = {}
            for name, app in apps.items():
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
                    made = await c.post("/files/", headers={**TUS, "Upload-Length": "100"})
                    paths[name] = httpx.URL(made.headers["Location"]).path.encode()

            async def receive() -> dict[str, object]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict[str, object]) -> None:
                pass

            async def one(name: str) -> float:
                scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "HEAD",
                         "scheme": "http", "path": paths[name].decode(), "raw_path": paths[name],
                         "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5000),
                         "server": ("127.0.0.1", 19080), "headers": [(b"host", b"x"), (b"tus-resumable", b"1.0.0")]}
                t0 = time.thread_time()
                for _ in range(requests):
                    scope["state"] = {}
                    await apps[name](dict(scope), receive, send)
                return (time.thread_time() - t0) / requests

            await one("off")
            await one("on")
            cpu: dict[str, list[float]] = {"off": [], "on": []}
            for r in range(rounds):
                for name in ("off", "on") if r % 2 == 0 else ("on", "off"):
                    cpu[name].append(await one(name))
        lines = (work / "access.log").read_text().count("chunkd.access")
    off, on = statistics.median(cpu["off"]), statistics.median(cpu["on"])
    print(json.dumps({"kind": "HEAD in-process", "requests_per_round": requests, "rounds": rounds,
                      "off_cpu_us": round(off * 1e6, 1), "on_cpu_us": round(on * 1e6, 1),
                      "diff_us": round((on - off) * 1e6, 1),
                      "off_per_round": [round(c * 1e6) for c in cpu["off"]],
                      "on_per_round": [round(c * 1e6) for c in cpu["on"]], "access_log_lines": lines}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--inproc", action="store_true")
    a = ap.parse_args()
    if a.inproc:
        import anyio

        anyio.run(_inproc, a.requests, a.rounds)
        return
    chunk = os.urandom(a.chunk)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        targets = [Target("off", work), Target("on", work, "--access-log")]
        try:
            for t in targets:  # warm up: imports, first connections, SQLite pages
                t.run("HEAD", 200, chunk)
                t.run("PATCH", 200, chunk)
            results: dict[tuple[str, str], list[tuple[float, float]]] = {}
            for r in range(a.rounds):
                for t in targets if r % 2 == 0 else targets[::-1]:
                    for kind in ("HEAD", "PATCH"):
                        results.setdefault((kind, t.name), []).append(t.run(kind, a.requests, chunk))
            lines = (work / "on.log").read_bytes().count(b"chunkd.access")
        finally:
            for t in targets:
                t.stop()
    for kind in ("HEAD", "PATCH"):
        row: dict[str, object] = {"kind": kind, "requests_per_round": a.requests, "rounds": a.rounds}
        for name in ("off", "on"):
            runs = results[(kind, name)]
            row[f"{name}_wall_us"] = round(statistics.median(w for w, _ in runs) * 1e6, 1)
            row[f"{name}_server_cpu_us"] = round(statistics.median(c for _, c in runs) * 1e6, 1)
            row[f"{name}_cpu_us_per_round"] = [round(c * 1e6) for _, c in runs]
        row["wall_diff_us"] = round(float(row["on_wall_us"]) - float(row["off_wall_us"]), 1)  # type: ignore[arg-type]
        row["cpu_diff_us"] = round(float(row["on_server_cpu_us"]) - float(row["off_server_cpu_us"]), 1)  # type: ignore[arg-type]
        print(json.dumps(row))
    print(json.dumps({"access_log_lines_written": lines}))


if __name__ == "__main__":
    main()
