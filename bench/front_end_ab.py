"""CPU of the HTTP front-end layer alone per chunk request: routing, dispatch and the answer, no engine work.

The real application (``create_app``, in this process, lifespan included) is called through ASGI with chunk
requests that every front end refuses before it touches the engine -- a tus ``PATCH /files/{id}`` without
``Tus-Resumable`` (412) and a Service Fabric ``UploadChunk`` without ``api-version`` (400) -- so what is
timed is the layer in front of the engine: the middlewares (metrics), the router or the hot path
(protocols/_hot.py), the front end's dispatch and its error answer. Thread CPU time per request, median of
``--rounds``. A/B against another tree: run it again with ``PYTHONPATH=/tmp/base/src`` (a git worktree).

    .venv/bin/python bench/front_end_ab.py [--requests 20000] [--rounds 5] [--answers]

``--answers`` (this tree only) also times building and sending a tus chunk's 204 both ways.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

UPLOAD = "0123456789abcdef0123456789abcdef"


async def run(requests: int, rounds: int) -> None:
    from chunkd.server.app import create_app
    from chunkd.settings import Settings

    with tempfile.TemporaryDirectory(prefix="front-end-ab-") as tmp:
        app = create_app(Settings(data_dir=Path(tmp), no_auth=True, sweep_interval=3600))
        async with app.router.lifespan_context(app):
            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            statuses: list[int] = []

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            shapes = {
                "tus PATCH (412)": ("PATCH", f"/files/{UPLOAD}", b"",
                                    [(b"content-type", b"application/offset+octet-stream"), (b"upload-offset", b"0")]),
                "SF UploadChunk (400)": ("PUT", "/ImageStore/a/b.bin/$/UploadChunk", b"session-id=x",
                                         [(b"content-range", b"bytes 0-0/1")]),
            }
            for name, (method, path, query, headers) in shapes.items():
                base = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query,
                        "root_path": "", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
                        "headers": [(b"host", b"x"), (b"content-length", b"0"), *headers]}
                cpu = []
                for _ in range(rounds + 1):  # the first round warms up
                    t0 = time.thread_time()
                    for _ in range(requests):
                        await app(dict(base), receive, send)
                    cpu.append((time.thread_time() - t0) / requests * 1e6)
                del cpu[0]
                print(f"{name:22}: {statistics.median(cpu):6.1f} µs CPU per request "
                      f"({' / '.join(f'{c:.1f}' for c in cpu)}), status {statuses[-1]}")


async def answers(requests: int, rounds: int) -> None:
    """A tus chunk's 204 built as Starlette's Response from a dict against protocols/_hot.Bodiless."""
    from starlette.responses import Response

    from chunkd.protocols._hot import Bodiless

    async def send(message: dict[str, Any]) -> None:
        pass

    scope: dict[str, Any] = {"type": "http"}

    async def starlette_response() -> None:
        headers = {"Tus-Resumable": "1.0.0", "Upload-Offset": str(65536),
                   "Upload-Expires": "Fri, 04 Dec 2026 13:00:00 GMT"}
        await Response(status_code=204, headers=headers)(scope, send, send)  # type: ignore[arg-type]

    async def bodiless() -> None:
        raw = [(b"tus-resumable", b"1.0.0"), (b"upload-offset", str(65536).encode()),
               (b"upload-expires", b"Fri, 04 Dec 2026 13:00:00 GMT")]
        await Bodiless(204, raw)(scope, send, send)  # type: ignore[arg-type]

    for name, make in (("Response(204, headers)", starlette_response), ("Bodiless(204, raw)", bodiless)):
        cpu = []
        for _ in range(rounds):
            t0 = time.thread_time()
            for _ in range(requests):
                await make()
            cpu.append((time.thread_time() - t0) / requests * 1e6)
        print(f"{name:22}: {statistics.median(cpu):6.1f} µs CPU per answer ({' / '.join(f'{c:.1f}' for c in cpu)})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--answers", action="store_true", help="also time a chunk's 204: Response against Bodiless")
    args = ap.parse_args()
    asyncio.run(run(args.requests, args.rounds))
    if args.answers:
        asyncio.run(answers(args.requests, args.rounds))


if __name__ == "__main__":
    main()
