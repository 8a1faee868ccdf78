"""PostgreSQL transactions sent in few round trips (``chunkd.metadata._pg_txn``), on the real server:
values are bound by psycopg, never spliced into the SQL; soft transactions (claims) do not wait for the WAL
flush and durable ones (records) do; a write sent later fails its own group-commit member, not another;
a connection goes back to the pool idle and out of autocommit, also after a failed commit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from chunkd.core.models import Piece, Session, SessionState
from chunkd.core.store import ClaimMode, WriteIntent
from chunkd.metadata import open_store
from chunkd.metadata._prepared import Prepared, Txn
from chunkd.metadata.sql import SqlSessionStore
from tests.conformance.metadata_suite import pg_database, pg_url

__all__ = ["pg_database"]  # the fixture, imported for this module's tests


@pytest.fixture
def pg(pg_database: str, tmp_path: Path) -> Iterator[SqlSessionStore]:
    store = open_store(pg_url(pg_database), str(tmp_path))
    assert isinstance(store, SqlSessionStore)
    anyio.run(store.migrate)
    try:
        yield store
    finally:
        anyio.run(store.close)


def _text(store: SqlSessionStore, sql: str) -> Prepared:
    return Prepared(sa.text(sql), store._writer.dialect)


def _session(sid: str, length: int) -> Session:
    now = time.time()
    return Session(id=sid, family="tus", owner="o'wner", namespace="n", key=sid, length=length,
                   state=SessionState.OPEN, created_at=now, modified_at=now, expires_at=now + 3600)


def test_hostile_values_are_bound_not_spliced(pg: SqlSessionStore) -> None:
    sid = "x'); DROP TABLE sessions; -- \\ %s %(sid)s ü\u2028"
    token = "t' OR '1'='1"
    claimed = pg.claim_blocking(WriteIntent(sid, token, 0, 10, ClaimMode.APPEND, create=_session(sid, 10)),
                                time.time(), 30.0)
    assert claimed.created and claimed.claim is not None and claimed.claim.to_write == [(0, 10)]
    now = time.time()
    tag = "blk'\\\"; --"
    recorded = pg.record_blocking(sid, token, [Piece("r'ef", 0, 10, "h\\andle", tag)], now, now + 60)
    assert recorded.session.received == 10 and recorded.session.complete
    got = anyio.run(pg.get, sid)
    assert got is not None and got.id == sid and got.owner == "o'wner"
    (piece,) = anyio.run(pg.pieces, sid)
    assert (piece.ref, piece.handle, piece.tag) == ("r'ef", "h\\andle", tag)


@pytest.mark.parametrize(("soft", "level"), [(True, "off"), (False, "on"), (True, "off")])
def test_only_soft_transactions_skip_the_wal_flush(pg: SqlSessionStore, soft: bool, level: str) -> None:
    show = _text(pg, "SHOW synchronous_commit")
    with pg._fast_write(soft=soft) as t:
        assert t.one(show) == (level,)
    with pg._fast_read(single=True) as t:  # and nothing of it stays on the pooled connection
        assert t.one(show) == ("on",)


def test_a_late_write_fails_its_own_member(pg: SqlSessionStore) -> None:
    """Three members of one group commit write only with ``later`` (nothing sent before their work
    returns); the middle one's insert breaks a constraint. It gets the error, the others commit."""
    group = pg._group
    names = ("first", "middle", "last")
    ok = _text(pg, "INSERT INTO resources (kind, id, tenant, owner, parent, data, created_at, modified_at, version)"
                   " VALUES ('t', :rid, '', '', '', '{}', 0, 0, 1)")
    bad = _text(pg, "INSERT INTO resources (kind, id) VALUES ('t', NULL)")  # the primary key is NOT NULL

    def work(name: str) -> Callable[[Txn], Any]:
        def run(t: Txn) -> str:
            if name == "middle":
                t.later(bad)
            else:
                t.later(ok, rid=name)
            return name
        return run

    gate = threading.Event()
    group.gate = gate
    out: dict[str, Any] = {}

    def member(name: str) -> None:
        try:
            out[name] = group.run(work(name))
        except Exception as exc:
            out[name] = exc

    threads = [threading.Thread(target=member, args=(n,)) for n in names]
    try:
        for i, th in enumerate(threads):  # each joins the queue (the gated leader first) in this order
            th.start()
            deadline = time.monotonic() + 30  # a hang guard, not a speed assertion
            while group.queued() < i + 1 and time.monotonic() < deadline:
                time.sleep(0.002)
        gate.set()
        for th in threads:
            th.join(30)
    finally:
        group.gate = None
    assert out["first"] == "first" and out["last"] == "last", out
    assert "null value" in str(out["middle"]), out
    with pg._fast_read(single=True) as t:
        rows = t.all(_text(pg, "SELECT id FROM resources WHERE kind = 't' ORDER BY id"))
    assert rows == [("first",), ("last",)]


def test_a_connection_goes_back_idle_after_a_failed_commit(pg: SqlSessionStore) -> None:
    bad = _text(pg, "INSERT INTO resources (kind, id) VALUES ('u', NULL)")
    with pytest.raises(Exception, match="null value"), pg._fast_write() as t:
        t.later(bad)  # sent with the COMMIT: the commit is what fails
    assert pg._writer.pool.checkedin() == 1  # type: ignore[attr-defined]  # the one connection this test used
    raw = pg._writer.raw_connection()
    try:
        conn = raw.driver_connection
        assert conn is not None and conn.autocommit is False and conn.info.transaction_status == 0
    finally:
        raw.close()
    with pg._fast_write() as t:  # and it works
        assert t.one(_text(pg, "SELECT 1")) == (1,)


def test_waits_are_bounded_unless_the_database_sets_its_own(pg_database: str, tmp_path: Path) -> None:
    """chunkd's lock and idle-in-transaction limits apply where the server has none (0, the default); a
    value set for the database (or role) stays."""
    import psycopg

    from tests.conformance.metadata_suite import PG_ADMIN

    def settings() -> tuple[Any, ...]:
        store = open_store(pg_url(pg_database), str(tmp_path))
        assert isinstance(store, SqlSessionStore)
        try:
            with store._fast_read(single=True) as t:
                row = t.one(_text(store, "SELECT current_setting('lock_timeout'), "
                                         "current_setting('idle_in_transaction_session_timeout')"))
            assert row is not None
            return row
        finally:
            anyio.run(store.close)

    assert settings() == ("30s", "1min")
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{pg_database}" SET lock_timeout = \'5s\'')
        try:
            assert settings() == ("5s", "1min")
        finally:
            admin.execute(f'ALTER DATABASE "{pg_database}" RESET lock_timeout')
