"""Measurements against chunkd's engine and store in this process (no HTTP): the costs that grow with
file size, received ranges and sessions, measured where they arise.

Stores are the embedded default (SQLite + local files) in a data directory on the same disk as the
servers'. Bulk set-up (100,000 ranges, 1M sessions) goes straight into the SQLite file with one
``executemany``: it is scaffolding, not the thing measured.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import anyio

from bench.flows import Source
from chunkd.core.engine import Engine, EngineConfig
from chunkd.core.principal import ANONYMOUS
from chunkd.metadata import open_store
from chunkd.storage import open_byte_store

NS = "bench"


async def _engine(data: Path, durable: bool = True) -> Engine:
    data.mkdir(parents=True, exist_ok=True)
    store = open_store("sqlite", str(data))
    await store.migrate()
    return Engine(store, open_byte_store("local", str(data)), EngineConfig(durable=durable))


def _db(data: Path) -> Path:
    return data / "chunkd.db"


async def _file_body(src: Source, size: int, piece: int = 4 << 20) -> AsyncIterator[bytes]:
    """``size`` bytes read from ``src`` in ``piece`` reads, wrapping around its end."""
    pos = 0
    while pos < size:
        n = min(piece, size - pos)
        off = pos % src.size
        n = min(n, src.size - off)
        yield await anyio.to_thread.run_sync(src.read, off, n)
        pos += n


# -- commit time against file size ------------------------------------------------------------------
async def commit_vs_size(work: Path, src: Source, sizes: list[int], cp_size: int) -> dict[str, object]:
    """Commit time per size (bytes written through the engine first, durable), and the time to
    ``cp`` + fsync a ``cp_size`` file on the same disk (commit is durable, so the copy is too)."""
    data = work / "inproc-commit"
    shutil.rmtree(data, ignore_errors=True)
    engine = await _engine(data)
    commits: dict[int, float] = {}
    try:
        for size in sizes:
            s = await engine.create_session(ANONYMOUS, "bench", NS, f"commit/{size}", size)
            await engine.write_range(s.id, ANONYMOUS, 0, size, _file_body(src, size))
            os.sync()
            t0 = time.perf_counter()
            await engine.commit(s.id, ANONYMOUS)
            commits[size] = time.perf_counter() - t0
        published = next((p for p in data.rglob(str(cp_size)) if p.is_file() and p.parent.name == "commit"), None)
        if published is None:
            raise RuntimeError("the committed object is missing")
        os.sync()
        copy = data / "copy.bin"
        t0 = time.perf_counter()
        subprocess.run(["cp", str(published), str(copy)], check=True)
        cp_only = time.perf_counter() - t0
        fd = os.open(copy, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        cp_sync = time.perf_counter() - t0
    finally:
        await engine.store.close()
        shutil.rmtree(data, ignore_errors=True)
    return {"commit": commits, "cp": cp_only, "cp_fsync": cp_sync, "cp_size": cp_size}


# -- missing-range query against the number of received ranges --------------------------------------
async def missing_vs_ranges(work: Path, counts: list[int], reps: int,
                            limit: int | None = None) -> dict[int, float]:
    """Median time of ``engine.missing(session, limit)`` with ``n`` disjoint received ranges (every other
    4 KiB): the first ``limit`` gaps (what Graph's nextExpectedRanges lists), or all of them."""
    data = work / "inproc-missing"
    shutil.rmtree(data, ignore_errors=True)
    engine = await _engine(data)
    out: dict[int, float] = {}
    unit = 4096
    try:
        for n in counts:
            s = await engine.create_session(ANONYMOUS, "bench", NS, f"missing/{n}", 2 * n * unit)
            with sqlite3.connect(_db(data)) as db:
                db.executemany("INSERT INTO session_ranges (session_id, start, stop) VALUES (?, ?, ?)",
                               ((s.id, 2 * i * unit, (2 * i + 1) * unit) for i in range(n)))
                db.execute("UPDATE sessions SET received = ? WHERE id = ?", (n * unit, s.id))
            s = await engine.get_session(s.id)
            times = []
            for _ in range(reps if n < 10_000 else max(3, reps // 3)):
                t0 = time.perf_counter()
                gaps = await engine.missing(s, limit)
                times.append(time.perf_counter() - t0)
            if len(gaps) != (n if limit is None else min(n, limit)):
                raise RuntimeError(f"expected {n} gaps (limit {limit}), got {len(gaps)}")
            out[n] = statistics.median(times)
    finally:
        await engine.store.close()
        shutil.rmtree(data, ignore_errors=True)
    return out


async def chunk_cost_inproc(work: Path, src: Source, reps: int) -> float:
    """Median time of one durable 64 KiB ``write_range`` through the engine (no HTTP)."""
    data = work / "inproc-chunk"
    shutil.rmtree(data, ignore_errors=True)
    engine = await _engine(data)
    piece = src.read(0, 64 << 10)

    async def body() -> AsyncIterator[bytes]:
        yield piece

    try:
        s = await engine.create_session(ANONYMOUS, "bench", NS, "chunk", reps * len(piece))
        times = []
        for i in range(reps):
            t0 = time.perf_counter()
            await engine.write_range(s.id, ANONYMOUS, i * len(piece), (i + 1) * len(piece), body())
            times.append(time.perf_counter() - t0)
    finally:
        await engine.store.close()
        shutil.rmtree(data, ignore_errors=True)
    return statistics.median(times)


# -- metadata operations against the number of sessions in the store --------------------------------
_COLUMNS = ("id", "family", "owner", "tenant", "namespace", "key", "length", "state", "created_at",
            "modified_at", "expires_at", "content_type", "name", "metadata", "received", "version",
            "storage_ref", "extra")


def _bulk_sessions(db_path: Path, start: int, stop: int) -> None:
    now = time.time()
    sql = f"INSERT INTO sessions ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
    rows = ((f"{i:032x}", "bench", "anonymous", "", NS, f"bulk/{i}", 1 << 20, "open", now, now,
             now + 86400 + i % 3600, "", "", "{}", 0, 0, "", "{}") for i in range(start, stop))
    with sqlite3.connect(db_path) as db:
        db.execute("PRAGMA synchronous=OFF")
        db.executemany(sql, rows)


async def metadata_vs_sessions(work: Path, counts: list[int], reps: int) -> dict[int, dict[str, float]]:
    """Median seconds of each engine operation with ``n`` sessions already in the store."""
    data = work / "inproc-meta"
    shutil.rmtree(data, ignore_errors=True)
    engine = await _engine(data)
    piece = b"x" * 4096

    async def body() -> AsyncIterator[bytes]:
        yield piece

    out: dict[int, dict[str, float]] = {}
    have = 0
    try:
        for n in counts:
            _bulk_sessions(_db(data), have, n)
            have = n
            ops: dict[str, list[float]] = {k: [] for k in
                                           ("create", "get", "write 4 KiB", "commit", "delete", "list 100",
                                            "sweep")}

            async def timeit(name: str, fn: Awaitable[Any]) -> Any:
                t0 = time.perf_counter()
                res = await fn
                ops[name].append(time.perf_counter() - t0)  # noqa: B023 - used within the iteration
                return res

            for _ in range(reps):
                key = f"op/{uuid.uuid4().hex}"
                s = await timeit("create", engine.create_session(ANONYMOUS, "bench", NS, key, 4096))
                await timeit("get", engine.get_session(s.id))
                await timeit("write 4 KiB", engine.write_range(s.id, ANONYMOUS, 0, 4096, body()))
                await timeit("commit", engine.commit(s.id, ANONYMOUS))
                d = await engine.create_session(ANONYMOUS, "bench", NS, key + "-d", 10)
                await timeit("delete", engine.delete_session(d.id, ANONYMOUS))
                # as the admin API lists: one owner's sessions, a page from the middle
                await timeit("list 100", engine.list_sessions(owner=ANONYMOUS.key, limit=100, after=f"{n // 2:032x}"))
            for _ in range(max(3, reps // 10)):
                await timeit("sweep", engine.sweep())
            out[n] = {k: statistics.median(v) for k, v in ops.items() if v}
    finally:
        await engine.store.close()
        shutil.rmtree(data, ignore_errors=True)
    return out
