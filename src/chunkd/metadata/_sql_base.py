"""Connections, transactions and life cycle of the SQL store.

Every write is one transaction that first locks the session: SQLite takes the database write lock with
``BEGIN IMMEDIATE`` (WAL mode, so readers are not blocked), PostgreSQL locks the session row with
``SELECT ... FOR UPDATE``. SQLite runs with ``synchronous=FULL`` in WAL mode: a committed ``record``
survives a power loss, which is what lets a front end answer 2xx for a chunk.

``transactions`` counts every transaction this store object ran (reads included), for the per-chunk
cost tests and for diagnostics.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from chunkd.core.errors import StorageFull, StorageUnavailable
from chunkd.metadata._group_commit import GroupCommit
from chunkd.metadata._pg_txn import pg_transaction
from chunkd.metadata._prepared import Prepared, Txn, transaction
from chunkd.metadata._sql_hot import Hot
from chunkd.metadata._sqlite_writer import SqliteWriter
from chunkd.metadata._write_lock import WriteLock

T = TypeVar("T")


class SqlBase:
    """Engines for SQLite (``sqlite:///path``) or PostgreSQL (``postgresql+psycopg://...``)."""

    def __init__(self, url: str, *, durable: bool = True) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite")
        self.name = "sqlite" if self.sqlite else "postgresql"
        self.transactions = 0
        self.on_commit: Callable[[], None] | None = None  # core.store.CountsCommits (metrics)
        self._count_lock = threading.Lock()
        self._migrated = threading.Lock()
        self._write_lock: WriteLock | None = None
        if self.sqlite:
            db = Path(url.removeprefix("sqlite:///"))
            db.parent.mkdir(parents=True, exist_ok=True)
            self._write_lock = WriteLock(db.with_name(db.name + "-writer.lock"))
            self._writer = self._sqlite_engine("BEGIN IMMEDIATE", synchronous="FULL" if durable else "NORMAL")
            self._reader = self._sqlite_engine("BEGIN")
            # The prepared hot-path writes (claim, record, ...) all run on one connection (_sqlite_writer).
            # Write claims are leases, soft state: a claim lost with the machine's power is harmless (its
            # writer died too), so claim/renew/release commits skip the WAL fsync. Visibility and atomicity
            # are unchanged, and the next FULL commit (``record``, which acknowledges bytes) fsyncs the WAL
            # with these frames in it. Saves one of the two fsyncs per chunk (bench/README.md, section 3).
            self._sqlite_writer: SqliteWriter | None = SqliteWriter(self._writer, "FULL" if durable else "NORMAL")
        else:
            self._writer = _pinged_when_idle(_bounded_waits(sa.create_engine(url, pool_size=10, max_overflow=20)))
            self._reader = self._writer
            self._sqlite_writer = None
        self._hot = Hot(self._writer.dialect)
        # records (the durable acknowledgement of bytes) are group-committed: one fsync for concurrent ones
        self._group = GroupCommit(self._grouped_txn, self._lock_row)
        self._updates: dict[tuple[str, ...], Prepared] = {}
        # statements run on the DB-API connection raise the driver's own IntegrityError, not SQLAlchemy's
        dbapi = self._writer.dialect.dbapi
        self._integrity_errors: tuple[type[Exception], ...] = (
            sa.exc.IntegrityError, *((dbapi.IntegrityError,) if dbapi is not None else ()))
        # PostgreSQL's connection-level failures (server gone or restarting, connection lost, deadlock,
        # statement timeout: OperationalError and its subclasses) answer 503 (retry), not 500. The server
        # rolls a cut-off transaction back, or -- a commit whose answer was lost -- kept it, and the retry
        # finds it (bytes already recorded are acknowledged again). SQLite's OperationalError stays as it is.
        self._unavailable: tuple[type[Exception], ...] = () if self.sqlite else (
            sa.exc.OperationalError, *((dbapi.OperationalError,) if dbapi is not None else ()), *_ended_by_server())

    def _sqlite_engine(self, begin: str, synchronous: str = "FULL") -> Engine:
        engine = sa.create_engine(self.url, connect_args={"check_same_thread": False, "timeout": 60},
                                  pool_size=8, max_overflow=16)

        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql(begin)

        return engine

    # -- plumbing ---------------------------------------------------------------------------------
    async def _run(self, fn: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(self._blocking, fn)

    def _blocking(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the calling thread, a full disk raised as StorageFull, a PostgreSQL server that
        cannot be reached (or dropped the connection) as StorageUnavailable."""
        try:
            return fn()
        except Exception as exc:
            if _is_full(exc):
                raise StorageFull("the metadata store's disk is full") from exc
            if isinstance(exc, self._unavailable):
                raise StorageUnavailable("the metadata store cannot be reached; retry") from exc
            raise

    def _counted(self) -> None:
        with self._count_lock:
            self.transactions += 1

    @contextmanager
    def _write(self, session_id: str | None = None) -> Iterator[Connection]:
        """A write transaction holding the session's lock (soft ones are the hot path's: ``_fast_write``)."""
        self._counted()
        with self._serialized(), self._writer.begin() as conn:
            if session_id is not None and not self.sqlite:
                conn.execute(sa.text("SELECT id FROM sessions WHERE id = :sid FOR UPDATE"), {"sid": session_id})
            yield conn
        self._committed()

    @contextmanager
    def _fast_write(self, session_id: str | None = None, *, soft: bool = False) -> Iterator[Txn]:
        """``_write`` for the prepared hot-path statements (see ``_prepared``)."""
        self._counted()
        if self._sqlite_writer is not None:
            with self._serialized(), self._sqlite_writer.transaction(soft=soft) as t:
                yield t
        else:
            with pg_transaction(self._writer, soft=soft) as t:  # PostgreSQL: the session's row lock, not a global one
                if session_id is not None:
                    t.later(self._hot.lock, sid=session_id)  # sent with the first statement that follows
                yield t
        self._committed()

    def _committed(self) -> None:
        """Reached only when the write transaction's block ended without an error, i.e. it committed."""
        if self.on_commit is not None:
            self.on_commit()

    @contextmanager
    def _serialized(self) -> Iterator[None]:
        """SQLite: wait for the database's write lock without polling (``_write_lock``); PostgreSQL
        locks rows, and writers of different sessions run at once."""
        if self._write_lock is None:
            yield
        else:
            with self._write_lock.held():
                yield

    @contextmanager
    def _grouped_txn(self) -> Iterator[Txn]:
        """One write transaction of a group-commit batch (its members lock their sessions themselves)."""
        with self._fast_write() as t:
            yield t

    def _lock_row(self, t: Txn, session_id: str) -> None:
        if not self.sqlite:  # SQLite's BEGIN IMMEDIATE already holds the database's write lock
            t.later(self._hot.lock, sid=session_id)

    @contextmanager
    def _fast_read(self, *, single: bool = False) -> Iterator[Txn]:
        """A read transaction for prepared statements; a ``single`` statement needs no BEGIN on SQLite."""
        self._counted()
        if not self.sqlite:  # one statement alone needs no BEGIN and COMMIT: one round trip, not three
            with pg_transaction(self._reader, begin=not single) as t:
                yield t
        else:
            with transaction(self._reader, None if single else "BEGIN") as t:
                yield t

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        self._counted()
        with self._reader.begin() as conn:
            yield conn

    # -- life cycle -------------------------------------------------------------------------------
    async def migrate(self) -> None:
        def current() -> bool:
            # the common case, a schema at head, needs one SELECT and no alembic (a heavy import that every
            # server process and worker would pay at start-up)
            try:
                with self._read() as conn:
                    version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
            except sa.exc.DBAPIError:
                return False
            return version == _head_revision()

        if await self._run(current):
            return

        def run() -> None:
            from alembic import command
            from alembic.config import Config

            cfg = Config()
            cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
            with self._migrated, self._writer.begin() as conn:
                cfg.attributes["connection"] = conn
                if not self.sqlite:  # serialise concurrent migrators across processes
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(4242001)")
                command.upgrade(cfg, "head")

        await self._run(run)

    async def close(self) -> None:
        if self._sqlite_writer is not None:
            self._sqlite_writer.close()
        self._writer.dispose()
        self._reader.dispose()
        if self._write_lock is not None:
            self._write_lock.close()

    async def server_time(self) -> float:
        """SQLite lives on this machine, so its clock is this machine's; PostgreSQL reports its own."""
        if self.sqlite:
            return time.time()

        def run() -> float:
            with self._read() as conn:
                return float(conn.exec_driver_sql("SELECT extract(epoch FROM clock_timestamp())").scalar_one())

        return await self._run(run)


IDLE_PING = 2.0  # seconds a pooled PostgreSQL connection may sit unused before a checkout pings it
# PostgreSQL limits on the waits a small write can cause (its transaction holds the session's row while the
# bytes are flushed, _pg_held.py): a statement that waits longer for a lock fails (503, retry), and a
# transaction left idle longer -- its process hung between statements -- is ended by the server, its locks
# released. Applied to a connection only where the server's own setting is 0 (off, the default): a value a
# DBA set for the role or database stays.
LOCK_TIMEOUT_MS = 30_000
IDLE_IN_TRANSACTION_MS = 60_000


def _ended_by_server() -> tuple[type[Exception], ...]:
    """psycopg's error for a transaction the server ended after ``IDLE_IN_TRANSACTION_MS`` (SQLSTATE
    25P03, an InternalError by its class): the connection is gone, the transaction rolled back; retry."""
    from psycopg import errors

    return (errors.IdleInTransactionSessionTimeout,)


def _bounded_waits(engine: Engine) -> Engine:
    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _rec: Any) -> None:
        before = dbapi_conn.autocommit
        dbapi_conn.autocommit = True
        try:
            for name, value in (("lock_timeout", LOCK_TIMEOUT_MS),
                                ("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION_MS)):
                current = dbapi_conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
                if current is not None and current[0] in ("0", "0ms"):
                    dbapi_conn.execute(f"SET {name} = {int(value)}")
        finally:
            dbapi_conn.autocommit = before

    return engine


def _pinged_when_idle(engine: Engine) -> Engine:
    """Check a pooled connection before use only when it sat idle for more than ``IDLE_PING`` s.

    ``pool_pre_ping`` pings on every checkout: one more round trip for each transaction, two per chunk
    (claim and record), where a chunk runs about twenty. A connection in steady use is checked by that use;
    one that sat idle is where a restarted or idle-timed-out server shows, and a failed ping makes the pool
    replace it (``DisconnectionError``) before any statement of the transaction ran.
    """
    @sa.event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since <= IDLE_PING:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise sa.exc.DisconnectionError("the pooled connection is gone") from exc

    return engine


def _is_full(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "database or disk is full" in text or "no space left on device" in text or "disk full" in text


def _head_revision() -> str:
    """The newest migration's revision id: migrations are named ``NNNN_<what>.py`` with revision ``NNNN``."""
    names = [n.split("_", 1)[0] for n in os.listdir(Path(__file__).parent / "migrations" / "versions")
             if n[:4].isdigit() and n.endswith(".py")]
    return max(names)

