"""CPU per 64 KiB chunk request of chunkd's ASGI application, in this process, without uvicorn.

Builds the real application (``create_app``: SQLite + local files in a scratch directory, durable acks on
unless ``--no-durable``), runs its lifespan, and calls it as an ASGI server would -- one scope, the body in
one ``http.request`` message, the response collected -- for N tus PATCHes of one upload and N Service
Fabric UploadChunks of one session, one request at a time (``--conc`` runs that many uploads at once).
It prints CPU-ms (``time.process_time``: every thread of the process) and wall-ms per request, and the
number of worker-thread hops (``anyio.to_thread.run_sync`` calls) per request.

The HTTP layer (uvicorn's parsing, ``server/limits.py``) is not in these figures; ``bench/run --only small``
measures the whole server. This is the narrow, low-noise A/B for the application's own path:

    .venv/bin/python bench/chunk_profile.py                 # both flows, 2,000 requests each
    .venv/bin/python bench/chunk_profile.py --flow tus --profile cprofile   # + the top functions
    .venv/bin/python bench/chunk_profile.py --auth          # with a bearer token (token verification)
    .venv/bin/python bench/chunk_profile.py --metadata postgresql+psycopg://postgres@127.0.0.1/DB  # PostgreSQL
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

CHUNK = 64 << 10
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Caller:
    """Calls an ASGI app with one request and returns (status, headers)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, method: str, path: str, headers: dict[str, str], body: bytes,
                       query: str = "") -> tuple[int, dict[str, str]]:
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        raw.append((b"content-length", str(len(body)).encode()))
        raw.append((b"host", b"127.0.0.1"))
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
                 "root_path": "", "headers": raw, "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 25000)}
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await anyio.sleep_forever()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        status = 0
        out: dict[str, str] = {}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                out.update({k.decode().lower(): v.decode() for k, v in message.get("headers", [])})

        await self.app(scope, receive, send)
        return status, out


TUS = {"Tus-Resumable": "1.0.0"}


async def tus_flow(call: Caller, n: int, piece: bytes, auth: dict[str, str]) -> None:
    status, h = await call("POST", "/files/", {**TUS, **auth, "Upload-Length": str(n * len(piece))}, b"")
    assert status == 201, status
    path = "/files/" + h["location"].rsplit("/", 1)[1]
    for i in range(n):
        status, _ = await call("PATCH", path, {**TUS, **auth, "Upload-Offset": str(i * len(piece)),
                                               "Content-Type": "application/offset+octet-stream"}, piece)
        assert status == 204, status


async def sf_flow(call: Caller, n: int, piece: bytes, auth: dict[str, str]) -> None:
    sid, total = str(uuid.uuid4()), n * len(piece)
    key = f"bench/{sid}.bin"
    for i in range(n):
        start = i * len(piece)
        status, _ = await call("PUT", f"/ImageStore/{key}/$/UploadChunk",
                               {**auth, "Content-Range": f"bytes {start}-{start + len(piece) - 1}/{total}"}, piece,
                               query=f"api-version=6.0&session-id={sid}")
        assert status == 200, status


FLOWS = {"tus": tus_flow, "sf": sf_flow}


class HopCounter:
    """Counts worker-thread hops: ``anyio.to_thread.run_sync`` calls and the chunk path's own hop
    (``chunkd.core.worker_hop.run_in_worker``)."""

    def __init__(self) -> None:
        from chunkd.core import worker_hop

        self.n = 0
        self._module = worker_hop
        self._orig = anyio.to_thread.run_sync
        self._orig_hop = worker_hop.run_in_worker

    def __enter__(self) -> HopCounter:
        orig, orig_hop = self._orig, self._orig_hop

        async def counted(*args: Any, **kw: Any) -> Any:
            self.n += 1
            return await orig(*args, **kw)

        async def counted_hop(*args: Any) -> Any:
            self.n += 1
            return await orig_hop(*args)

        anyio.to_thread.run_sync = counted  # type: ignore[assignment]
        self._module.run_in_worker = counted_hop  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        anyio.to_thread.run_sync = self._orig  # type: ignore[assignment]
        self._module.run_in_worker = self._orig_hop


async def measure(app: Any, flow: str, n: int, conc: int, profile: str, auth: dict[str, str]) -> dict[str, float]:
    call = Caller(app)
    piece = os.urandom(CHUNK)
    fn = FLOWS[flow]
    await fn(call, 20, piece, auth)  # warm up: first-use imports, connections, prepared statements
    prof = cProfile.Profile() if profile == "cprofile" else None
    with HopCounter() as hops:
        c0, w0 = time.process_time(), time.perf_counter()
        if prof is not None:
            prof.enable()
        async with anyio.create_task_group() as tg:
            for _ in range(conc):
                tg.start_soon(fn, call, n, piece, auth)
        if prof is not None:
            prof.disable()
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    reqs = n * conc
    if prof is not None:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(35)
        print(s.getvalue())
    return {"cpu_ms": cpu / reqs * 1e3, "wall_ms": wall / reqs * 1e3, "hops": hops.n / reqs}


async def run(args: argparse.Namespace) -> None:
    from chunkd.server.app import create_app
    from chunkd.settings import Settings

    base = Path(tempfile.mkdtemp(prefix="chunk-profile-", dir=args.work))
    try:
        settings = Settings(data_dir=base, no_auth=not args.auth, durable=not args.no_durable,
                            **({"metadata": args.metadata} if args.metadata else {}))
        app = create_app(settings)
        auth: dict[str, str] = {}
        if args.auth:
            auth = {"Authorization": "Bearer " + _token(app)}
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(app.router.lifespan_context(app))
            flows = ["tus", "sf"] if args.flow == "both" else [args.flow]
            results: dict[str, list[dict[str, float]]] = {f: [] for f in flows}
            for _ in range(args.rounds):
                for f in flows:
                    results[f].append(await measure(app, f, args.n, args.conc, args.profile, auth))
            for f, rs in results.items():
                cpu = [r["cpu_ms"] for r in rs]
                wall = [r["wall_ms"] for r in rs]
                print(f"{f:4} conc={args.conc} durable={not args.no_durable} auth={args.auth}: "
                      f"CPU {statistics.median(cpu):.3f} ms/req ({', '.join(f'{c:.3f}' for c in cpu)}), "
                      f"wall {statistics.median(wall):.3f} ms, hops {rs[-1]['hops']:.2f}/req")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _token(app: Any) -> str:
    from chunkd.auth.permissions import IMAGESTORE_ADMIN, TUS_READWRITE
    from chunkd.auth.tokens import issue_token

    keys = app.state.components.keys
    return issue_token(keys.jwt_secret, roles=[TUS_READWRITE, IMAGESTORE_ADMIN], lifetime=3600)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flow", choices=["tus", "sf", "both"], default="both")
    ap.add_argument("-n", type=int, default=2000, help="requests per upload")
    ap.add_argument("--conc", type=int, default=1, help="uploads at once")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-durable", action="store_true")
    ap.add_argument("--metadata", default="", help="metadata store URL, e.g. postgresql+psycopg://postgres@127.0.0.1/"
                    "chunkd_profile (an empty database; default: SQLite in the scratch directory)")
    ap.add_argument("--auth", action="store_true", help="authenticate with a bearer token")
    ap.add_argument("--profile", choices=["", "cprofile"], default="")
    ap.add_argument("--work", default=None, help="scratch directory (default: the system's temp dir)")
    ap.add_argument("--asyncio", action="store_true", help="plain asyncio loop (default: uvloop, as chunkd serve)")
    args = ap.parse_args()
    anyio.run(run, args, backend_options={"use_uvloop": not args.asyncio})


if __name__ == "__main__":
    main()
