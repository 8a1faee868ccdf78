"""CPU of two parts of a 64 KiB chunk request, each alone: the metadata transactions and the thread hop.

``store``: the claim and record transactions of N 64 KiB appends to one session, called directly on the
SQL store (``SqlSessionStore.claim_blocking`` / ``record_blocking``) in one thread, as the one-hop small
write path calls them -- no HTTP, no byte store. Prints thread CPU per chunk for each round. With
``--metadata`` PostgreSQL these are the two transactions of the streaming path; the server's small chunks take
one held transaction there instead (``metadata/_pg_held.py``), which ``bench/chunk_profile.py --metadata``
measures with the rest of the request.

``hop``: one worker-thread hop of a function that does nothing, under uvloop: ``anyio.to_thread.run_sync``
against the chunk path's own hop (``chunkd.core.worker_hop.run_in_worker``). Prints CPU per hop.

    .venv/bin/python bench/chunk_parts.py store [--durable] [-n 3000] [--rounds 5] [--metadata URL]
    .venv/bin/python bench/chunk_parts.py hop [-n 5000] [--rounds 2]
    PYTHONPATH=/tmp/base/src .venv/bin/python bench/chunk_parts.py store   # another tree (git worktree add)

Single rounds on this 2-core VM scatter by 10-30 %: compare medians of alternating runs of two trees.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import anyio
import anyio.to_thread

CHUNK = 64 << 10


def store_rounds(n: int, rounds: int, durable: bool, metadata: str) -> tuple[list[float], list[float]]:
    from chunkd.core.models import Piece, Session, SessionState
    from chunkd.core.store import ClaimMode, WriteIntent
    from chunkd.metadata.sql import SqlSessionStore

    work = Path(tempfile.mkdtemp(prefix="chunk-parts-"))
    store = SqlSessionStore(metadata or f"sqlite:///{work}/meta.db", durable=durable)
    try:
        anyio.run(store.migrate)
        out, walls = [], []
        for _ in range(rounds):
            now = time.time()
            sid = uuid.uuid4().hex
            session = Session(id=sid, family="tus", owner="bench", namespace="tus", key=sid, length=CHUNK * n,
                              state=SessionState.OPEN, created_at=now, modified_at=now, expires_at=now + 3600)
            t0, w0 = time.thread_time(), time.perf_counter()
            for i in range(n):
                token = uuid.uuid4().hex
                claimed = store.claim_blocking(WriteIntent(sid, token, i * CHUNK, (i + 1) * CHUNK, ClaimMode.APPEND,
                                                           create=session if i == 0 else None), time.time(), 30.0)
                assert claimed.claim is not None and claimed.claim.to_write, claimed
                now = time.time()
                store.record_blocking(sid, token, [Piece("ref", i * CHUNK, (i + 1) * CHUNK, "h")], now, now + 3600)
            out.append((time.thread_time() - t0) / n * 1e6)
            walls.append((time.perf_counter() - w0) / n * 1e6)
        anyio.run(store.close)
        return out, walls
    finally:
        shutil.rmtree(work, ignore_errors=True)


def hop_rounds(n: int, rounds: int) -> dict[str, list[float]]:
    import uvloop

    from chunkd.core.worker_hop import run_in_worker

    def noop() -> int:
        return 1

    out: dict[str, list[float]] = {"anyio.to_thread.run_sync": [], "worker_hop.run_in_worker": []}

    async def main() -> None:
        for _ in range(rounds):
            for name in out:
                t0 = time.process_time()
                for _ in range(n):
                    if name.startswith("anyio"):
                        await anyio.to_thread.run_sync(noop)
                    else:
                        await run_in_worker(noop)
                out[name].append((time.process_time() - t0) / n * 1e6)

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(main())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["store", "hop"])
    ap.add_argument("-n", type=int, default=0, help="chunks (store, default 3000) or hops (default 5000) per round")
    ap.add_argument("--rounds", type=int, default=0, help="default: 5 (store), 2 (hop)")
    ap.add_argument("--durable", action="store_true", help="store: synchronous=FULL records (durable acks)")
    ap.add_argument("--metadata", default="", help="store: a metadata URL (default: SQLite in a scratch directory), "
                    "e.g. postgresql+psycopg://postgres@127.0.0.1/DB (an existing, disposable database)")
    args = ap.parse_args()
    if args.part == "store":
        r, w = store_rounds(args.n or 3000, args.rounds or 5, args.durable, args.metadata)
        print(f"claim + record, durable={args.durable}: CPU µs per chunk {' '.join(f'{x:.0f}' for x in r)}, "
              f"median {statistics.median(r):.0f}; wall µs {' '.join(f'{x:.0f}' for x in w)}, "
              f"median {statistics.median(w):.0f}")
    else:
        for name, r in hop_rounds(args.n or 5000, args.rounds or 2).items():
            print(f"{name}: CPU µs per hop {' '.join(f'{x:.0f}' for x in r)}, median {statistics.median(r):.0f}")


if __name__ == "__main__":
    main()
