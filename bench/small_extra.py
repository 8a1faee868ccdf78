"""Section 3's extras: the machine's own durability limits, server CPU per request, a PostgreSQL node and
``--workers 2``.

- ``machine_limits`` measures, in the same run and on the same disk as the servers' data, what one durable
  64 KiB acknowledgement costs at the least: a ``pwrite`` + ``fdatasync`` of 64 KiB appended to a file and
  one SQLite WAL commit with ``synchronous=FULL`` (one small INSERT). ``1 / (fdatasync + commit)`` is the
  rate a server that flushes and commits once per request (no group commit) cannot beat on one connection.
- ``cpu_seconds`` sums utime + stime of a server process and its descendants (uvicorn workers included)
  from ``/proc``: the server's own CPU, not the driver's.
- ``PgChunkd`` is ``chunkd serve`` on local files with its metadata in a PostgreSQL database of its own
  (created and dropped by the run); ``commits`` reads PostgreSQL's own counters -- write transactions,
  all commits of the database (read-only ones included) and WAL flushes -- so commits per chunk are
  counted by PostgreSQL itself.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import time
from pathlib import Path

from bench.multi_node_section import PG_ADMIN, Database
from bench.object_store_section import cpu_seconds
from bench.peers import Chunkd

__all__ = ["PgChunkd", "cpu_seconds", "machine_limits", "pg_available"]


def machine_limits(work: Path, n: int = 50, size: int = 64 << 10) -> dict[str, float]:
    """Median seconds of one 64 KiB ``pwrite`` + ``fdatasync`` (appending) and of one SQLite WAL commit
    (``synchronous=FULL``), ``n`` of each, in ``work``; the files are removed afterwards."""
    work.mkdir(parents=True, exist_ok=True)
    path, db = work / "limits.bin", work / "limits.sqlite"
    buf = os.urandom(size)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    flush = []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            os.pwrite(fd, buf, i * size)
            os.fdatasync(fd)
            flush.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    con = sqlite3.connect(db, isolation_level=None)
    commit = []
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute("CREATE TABLE r (id INTEGER PRIMARY KEY, lo INTEGER, hi INTEGER)")
        for i in range(n):
            t0 = time.perf_counter()
            con.execute("BEGIN IMMEDIATE")
            con.execute("INSERT INTO r (lo, hi) VALUES (?, ?)", (i * size, (i + 1) * size))
            con.execute("COMMIT")
            commit.append(time.perf_counter() - t0)
    finally:
        con.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    return {"fdatasync_64k": statistics.median(flush), "wal_commit": statistics.median(commit)}


def pg_available() -> str:
    """'' when the local PostgreSQL answers, else why not."""
    try:
        import psycopg

        psycopg.connect(PG_ADMIN).close()
    except Exception as exc:
        return f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}"[:300]
    return ""


class PgChunkd(Chunkd):
    """chunkd (durable, local files) with its metadata in a fresh PostgreSQL database, dropped on stop."""

    def __init__(self, workdir: Path) -> None:
        self.db = Database()
        super().__init__(workdir, label="chunkd-pg")

    def command(self) -> list[str]:
        return [*super().command(), "--metadata", self.db.url]

    def start(self) -> Chunkd:
        self.db.__enter__()
        self.made = True
        return super().start()  # type: ignore[return-value]

    def stop(self) -> None:
        super().stop()
        if getattr(self, "made", False):
            self.made = False
            self.db.__exit__()

    def commits(self) -> dict[str, int]:
        """PostgreSQL's own counters so far: ``writes``, transactions that wrote (the cluster's next
        transaction id, ``pg_snapshot_xmax(pg_current_snapshot())``: only a transaction that writes takes
        one; cluster-wide, so other databases' writes can only add to it); ``xact_commit``, every commit of
        this database, read-only ones included (what earlier runs reported); ``wal_syncs``, WAL flushes to
        disk (``pg_stat_wal.wal_sync``, cluster-wide: a durable commit costs at most one, fewer when
        PostgreSQL's own group commit shares them)."""
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            row = c.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (self.db.name,)).fetchone()
            xid = c.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint").fetchone()
            wal = c.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()
        return {"commits": self.chunkd_commits(), "writes": int(xid[0]) if xid else 0,
                "xact_commit": int(row[0]) if row else 0, "wal_syncs": int(wal[0]) if wal else 0}

    def chunkd_commits(self) -> int:
        """Write transactions the server's metadata store committed, from its own ``/metrics``
        (``chunkd_metadata_commits_total``; served without auth on loopback): exact, with a group commit
        counted once. The transaction ids above count a group commit's savepoints too (each member that
        writes takes a subtransaction id), so they overstate commits once requests share one."""
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("chunkd_metadata_commits_total "):
                    return int(float(line.split()[1]))
        return 0


class Workers2(Chunkd):
    """chunkd (durable, SQLite + local files) with ``--workers 2``."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, label="chunkd-workers2")

    def command(self) -> list[str]:
        return [*super().command(), "--workers", "2"]
