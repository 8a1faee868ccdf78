"""The one SQLite connection that every hot-path write transaction of a store object runs on.

SQLite writes one transaction at a time (``_write_lock`` queues them), so a single connection is enough
for all of them, and it is faster than a pool: a connection keeps its page cache only while no other
connection writes the database, and a chunk's claim and record used to run on two (the soft and the
durable engine's), each finding the other's write and reading the pages again; every transaction also
paid a checkout from SQLAlchemy's pool. With one connection, claim + record of a 64 KiB append cost
242 against 302 µs of CPU, 364 against 443 µs with durable acks (``bench/chunk_parts.py store``, medians of
5 rounds; ``bench/README.md``, "fourth round"). Its ``synchronous`` setting
follows each transaction: ``NORMAL`` for soft ones (claims: no WAL fsync), the store's own for the rest
(``FULL`` with durable acks), set between transactions as SQLite requires.

Every call must hold the store's write lock (``SqlBase._serialized``): the connection is shared by the
worker threads, one at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Engine
from sqlalchemy.pool import PoolProxiedConnection

from chunkd.metadata._prepared import Txn, on_connection

__all__ = ["SqliteWriter"]


class SqliteWriter:
    def __init__(self, engine: Engine, synchronous: str) -> None:
        """``engine`` makes the connection (its connect event sets WAL mode and ``synchronous``)."""
        self._engine, self._default = engine, synchronous
        self._raw: PoolProxiedConnection | None = None
        self._sync = synchronous

    @contextmanager
    def transaction(self, *, soft: bool) -> Iterator[Txn]:
        """A ``BEGIN IMMEDIATE`` transaction, committed when the block ends, rolled back on error; a soft
        one commits without the WAL fsync. Call it holding the write lock."""
        raw = self._raw
        if raw is None:
            raw = self._raw = self._engine.raw_connection()
            self._sync = self._default
        want = "NORMAL" if soft else self._default
        try:
            if want != self._sync:
                cur = raw.cursor()
                cur.execute(f"PRAGMA synchronous={want}")
                cur.close()
                self._sync = want
            with on_connection(raw, "BEGIN IMMEDIATE") as t:
                yield t
        except BaseException:
            if raw.dbapi_connection is not None and raw.dbapi_connection.in_transaction:
                self._drop()  # its commit or rollback failed: start over with a new connection
            raise

    def _drop(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            raw.invalidate()  # its synchronous may differ from the pool's: never back into the pool

    def close(self) -> None:
        self._drop()
