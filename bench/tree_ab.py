"""Server CPU per 64 KiB chunk request over HTTP, this checkout against another source tree, same run.

Starts ``chunkd serve --no-auth`` twice with this venv, once importing ``src/`` of this checkout and once that
of ``--base`` (e.g. ``git worktree add /tmp/base REV``; ``PYTHONPATH`` puts its ``src`` first), and drives
both in alternating rounds over one keep-alive connection each (``http.client``, the body in one buffer):
``--requests`` tus PATCHes of one upload, then as many Service Fabric UploadChunks of one session. Prints,
per flow and server, the server's CPU per request (utime + stime of its process tree from ``/proc``,
bracketing the round) and the wall time, medians over ``--rounds``, and current ÷ base.

    git worktree add /tmp/base main
    .venv/bin/python bench/tree_ab.py --base /tmp/base [--requests 1000] [--rounds 4] [--no-durable]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.local_server import CHUNKD, free_port
from bench.object_store_section import cpu_seconds

CHUNK = 64 << 10
ROOT = Path(__file__).resolve().parents[1]


class Server:
    def __init__(self, name: str, tree: Path, work: Path, durable: bool) -> None:
        self.name, self.port = name, free_port()
        env = {**os.environ, "PYTHONPATH": str(tree / "src"), "CHUNKD_DURABLE": "1" if durable else "0"}
        self.log = open(work / f"{name}.log", "wb")  # noqa: SIM115 - open for the process's lifetime
        self.proc = subprocess.Popen([*CHUNKD, "serve", "--no-auth", "--port", str(self.port), "--data-dir",
                                      str(work / name)], env=env, stdout=self.log, stderr=self.log)
        for _ in range(600):
            try:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.call("GET", "/healthz")
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"{name} did not start; see {work / name}.log")

    def call(self, method: str, path: str, headers: dict[str, str] | None = None,
             body: bytes = b"") -> http.client.HTTPResponse:
        self.conn.request(method, path, body=body, headers=headers or {})
        r = self.conn.getresponse()
        r.read()
        return r

    def round(self, flow: str, n: int, piece: bytes) -> tuple[float, float]:
        """(server CPU-ms, wall-ms) per request of ``n`` chunks of a new upload."""
        tus = {"Tus-Resumable": "1.0.0"}
        if flow == "tus":
            made = self.call("POST", "/files/", {**tus, "Upload-Length": str(n * len(piece))})
            path = "/files/" + (made.getheader("Location") or "").rsplit("/", 1)[1]
        sid = str(uuid.uuid4())
        cpu0, t0 = cpu_seconds(self.proc.pid), time.perf_counter()
        for i in range(n):
            start = i * len(piece)
            if flow == "tus":
                r = self.call("PATCH", path, {**tus, "Upload-Offset": str(start),
                                              "Content-Type": "application/offset+octet-stream"}, piece)
                assert r.status == 204, r.status
            else:
                r = self.call("PUT", f"/ImageStore/ab/{sid}.bin/$/UploadChunk?api-version=6.0&session-id={sid}",
                              {"Content-Range": f"bytes {start}-{start + len(piece) - 1}/{n * len(piece)}"}, piece)
                assert r.status == 200, r.status
        wall, cpu = time.perf_counter() - t0, cpu_seconds(self.proc.pid) - cpu0
        return cpu / n * 1e3, wall / n * 1e3

    def stop(self) -> None:
        self.conn.close()
        self.proc.terminate()
        self.proc.wait(20)
        self.log.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, type=Path, help="the other source tree (a git worktree)")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--no-durable", action="store_true")
    args = ap.parse_args()
    piece = os.urandom(CHUNK)
    with tempfile.TemporaryDirectory(prefix="tree-ab-") as tmp:
        servers = [Server("current", ROOT, Path(tmp), not args.no_durable),
                   Server("base", args.base.resolve(), Path(tmp), not args.no_durable)]
        try:
            for s in servers:  # warm up: imports, prepared statements
                for flow in ("tus", "sf"):
                    s.round(flow, 20, piece)
            res: dict[tuple[str, str], list[tuple[float, float]]] = {}
            for r in range(args.rounds):
                for s in servers if r % 2 == 0 else servers[::-1]:
                    for flow in ("tus", "sf"):
                        res.setdefault((flow, s.name), []).append(s.round(flow, args.requests, piece))
        finally:
            for s in servers:
                s.stop()
    print(f"{args.requests} x 64 KiB per round, {args.rounds} alternating rounds, durable={not args.no_durable}")
    for flow in ("tus", "sf"):
        med = {}
        for name in ("current", "base"):
            cpu = [c for c, _ in res[(flow, name)]]
            med[name] = statistics.median(cpu)
            print(f"  {flow:3} {name:7}: server CPU {med[name]:.3f} ms/req ({' / '.join(f'{c:.2f}' for c in cpu)}), "
                  f"wall {statistics.median(w for _, w in res[(flow, name)]):.3f} ms")
        print(f"  {flow:3} current ÷ base CPU: {med['current'] / med['base']:.2f}")


if __name__ == "__main__":
    main()
