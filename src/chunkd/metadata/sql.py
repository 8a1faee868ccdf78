"""Session metadata in SQLite or PostgreSQL through SQLAlchemy Core.

Every write is one transaction that first locks the session: SQLite takes the database write lock with
``BEGIN IMMEDIATE`` (WAL mode, so readers are not blocked), PostgreSQL locks the session row with
``SELECT ... FOR UPDATE``. Received ranges are rows ``(session_id, start, stop)`` keyed by start, so a
write touches only the neighbouring ranges it merges with.

SQLite runs with ``synchronous=FULL`` in WAL mode: a committed ``record`` survives a power loss, which
is what lets a front end answer 2xx for a chunk.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from chunkd.core.errors import (
    AlreadyExists,
    Conflict,
    NotFound,
    SessionConflict,
    SessionGone,
    SessionNotFound,
    WriteInterrupted,
)
from chunkd.core.models import Resource, Session, SessionState
from chunkd.core.ranges import Range, RangeSet, gaps_of_sorted
from chunkd.metadata._prepared import Prepared, Txn, transaction
from chunkd.metadata.base import Appending, Claim
from chunkd.metadata.schema import claims, resources, session_ranges, sessions

T = TypeVar("T")
_LIVE = (SessionState.OPEN.value, SessionState.COMMITTING.value, SessionState.COMMITTED.value)
_DEAD = tuple(s.value for s in SessionState if s.value not in _LIVE)
_JSON_FIELDS = ("metadata", "extra")


def _row_to_session(row: Any) -> Session:
    return _session_from(row._mapping)


_SESSION_COLUMNS = tuple(c.name for c in sessions.c)


def _tuple_to_session(row: tuple[Any, ...]) -> Session:
    return _session_from(dict(zip(_SESSION_COLUMNS, row, strict=True)))


def _session_from(m: Any) -> Session:
    return Session(
        id=m["id"], family=m["family"], owner=m["owner"], tenant=m["tenant"], namespace=m["namespace"],
        key=m["key"], length=m["length"], state=SessionState(m["state"]), created_at=m["created_at"],
        modified_at=m["modified_at"], expires_at=m["expires_at"], content_type=m["content_type"],
        name=m["name"], metadata=json.loads(m["metadata"]), received=m["received"], version=m["version"],
        storage_ref=m["storage_ref"], extra=json.loads(m["extra"]),
    )


_RESOURCE_COLUMNS = tuple(c.name for c in resources.c)


def _tuple_to_resource(row: tuple[Any, ...]) -> Resource:
    return _resource_from(dict(zip(_RESOURCE_COLUMNS, row, strict=True)))


def _resource_from(m: Any) -> Resource:
    return Resource(kind=m["kind"], id=m["id"], tenant=m["tenant"], owner=m["owner"], parent=m["parent"],
                    data=json.loads(m["data"]), created_at=m["created_at"], modified_at=m["modified_at"],
                    version=m["version"])


def _session_values(s: Session) -> dict[str, Any]:
    return {
        "id": s.id, "family": s.family, "owner": s.owner, "tenant": s.tenant, "namespace": s.namespace,
        "key": s.key, "length": s.length, "state": s.state.value, "created_at": s.created_at,
        "modified_at": s.modified_at, "expires_at": s.expires_at, "content_type": s.content_type,
        "name": s.name, "metadata": json.dumps(s.metadata), "received": s.received, "version": s.version,
        "storage_ref": s.storage_ref, "extra": json.dumps(s.extra),
    }


class _Hot:
    """The statements of the per-chunk path (get, claim, renew, record, release), prepared once."""

    def __init__(self, dialect: sa.engine.Dialect) -> None:
        def p(stmt: Any) -> Prepared:
            return Prepared(stmt, dialect)

        b = sa.bindparam
        r, c = session_ranges.c, claims.c
        self.get = p(sa.select(*sessions.c).where(sessions.c.id == b("sid")))
        self.lock = p(sa.select(sessions.c.id).where(sessions.c.id == b("sid")).with_for_update())
        self.ranges = p(sa.select(r.start, r.stop).where(r.session_id == b("sid")).order_by(r.start))
        self.first_ranges = p(sa.select(r.start, r.stop).where(r.session_id == b("sid")).order_by(r.start)
                              .limit(b("lim")))
        self.prefix = p(sa.select(r.stop).where(r.session_id == b("sid"), r.start == 0))
        self.range_before = p(sa.select(r.start, r.stop).where(r.session_id == b("sid"), r.start <= b("start"))
                              .order_by(r.start.desc()).limit(1))
        self.ranges_within = p(sa.select(r.start, r.stop).where(r.session_id == b("sid"), r.start > b("start"),
                                                                 r.start < b("end")).order_by(r.start))
        self.ranges_touching = p(sa.select(r.start, r.stop).where(r.session_id == b("sid"), r.start > b("start"),
                                                                   r.start <= b("end")).order_by(r.start))
        self.drop_ranges = p(session_ranges.delete().where(r.session_id == b("sid"), r.start >= b("lo"),
                                                           r.start <= b("hi")))
        self.add_range = p(session_ranges.insert())
        self.claimed = p(sa.select(c.start).where(c.session_id == b("sid"), c.start < b("end"), c.stop > b("start"))
                         .limit(1))
        self.claims_within = p(sa.select(c.start, c.stop).where(c.session_id == b("sid"), c.start < b("end"),
                                                                c.stop > b("start")))
        self.drop_expired = p(claims.delete().where(c.session_id == b("sid"), c.lease_until < b("before")))
        self.add_claim = p(claims.insert())
        self.renew = p(claims.update().where(c.session_id == b("sid"), c.token == b("tok"))
                       .values(lease_until=b("until")))
        self.drop_token = p(claims.delete().where(c.session_id == b("sid"), c.token == b("tok")))
        self.state = p(sa.select(sessions.c.state).where(sessions.c.id == b("sid")))
        self.add_session = p(sessions.insert())
        self.drop_all_ranges = p(session_ranges.delete().where(r.session_id == b("sid")))
        self.drop_all_claims = p(claims.delete().where(c.session_id == b("sid")))
        self.drop_session = p(sessions.delete().where(sessions.c.id == b("sid")))
        # lock the rows (PostgreSQL) so that a concurrent create() that replaces one of these dead sessions
        # with a live one waits, and then finds no row, instead of losing its new session; an IN over the
        # dead states (not NOT IN over the live ones) lets ix_sessions_dead serve it
        # (rendering the IN list needs a value for every parameter at compile time: 0.0 stands in for "before")
        dead = (sa.select(sessions.c.id).where(sessions.c.state.in_(_DEAD),
                                               sessions.c.modified_at < b("before", value=0.0)).limit(1000))
        self.dead = p(dead if dialect.name == "sqlite" else dead.with_for_update(skip_locked=True))
        q = resources.c
        self.get_resource = p(sa.select(*resources.c).where(q.kind == b("rkind"), q.id == b("rid")))
        self.resource_exists = p(sa.select(q.id).where(q.kind == b("rkind"), q.id == b("rid")))
        self.add_resource = p(resources.insert())
        self.bump = p(sessions.update().where(sessions.c.id == b("sid")).values(
            received=b("new_received"), version=b("new_version"), modified_at=b("new_modified"),
            expires_at=b("new_expires"), length=b("new_length")))


class SqlSessionStore:
    """SessionStore on SQLite (``sqlite:///path``) or PostgreSQL (``postgresql+psycopg://...``)."""

    def __init__(self, url: str, *, durable: bool = True) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite")
        self.name = "sqlite" if self.sqlite else "postgresql"
        self._migrated = threading.Lock()
        if self.sqlite:
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self._writer = self._sqlite_engine("BEGIN IMMEDIATE", synchronous="FULL" if durable else "NORMAL")
            self._reader = self._sqlite_engine("BEGIN")
            # Write claims are leases, soft state: a claim lost with the machine's power is harmless (its
            # writer died too), so claim/renew/release commits skip the WAL fsync. Visibility and atomicity
            # are unchanged, and the next FULL commit (``record``, which acknowledges bytes) fsyncs the WAL
            # with these frames in it. Saves one of the two fsyncs per chunk (bench/README.md, section 3).
            self._soft = self._sqlite_engine("BEGIN IMMEDIATE", synchronous="NORMAL")
        else:
            self._writer = sa.create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
            self._reader = self._writer
            self._soft = self._writer
        self._hot = _Hot(self._writer.dialect)
        self._updates: dict[tuple[str, ...], Prepared] = {}
        # statements run on the DB-API connection raise the driver's own IntegrityError, not SQLAlchemy's
        dbapi = self._writer.dialect.dbapi
        self._integrity_errors: tuple[type[Exception], ...] = (
            sa.exc.IntegrityError, *((dbapi.IntegrityError,) if dbapi is not None else ()))

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
        return await anyio.to_thread.run_sync(fn)

    @contextmanager
    def _write(self, session_id: str | None = None, *, soft: bool = False) -> Iterator[Connection]:
        """A write transaction holding the session's lock; ``soft`` ones (claims only) need no fsync."""
        with (self._soft if soft else self._writer).begin() as conn:
            if session_id is not None and not self.sqlite:
                conn.execute(sa.select(sessions.c.id).where(sessions.c.id == session_id).with_for_update())
            yield conn

    @contextmanager
    def _fast_write(self, session_id: str | None = None, *, soft: bool = False) -> Iterator[Txn]:
        """``_write`` for the prepared hot-path statements (see ``_prepared``)."""
        engine = self._soft if soft else self._writer
        with transaction(engine, "BEGIN IMMEDIATE" if self.sqlite else None) as t:
            if session_id is not None and not self.sqlite:
                t.one(self._hot.lock, sid=session_id)
            yield t

    @contextmanager
    def _fast_read(self, *, single: bool = False) -> Iterator[Txn]:
        """A read transaction for prepared statements; a ``single`` statement needs no BEGIN on SQLite."""
        with transaction(self._reader, None if single or not self.sqlite else "BEGIN") as t:
            yield t

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._reader.begin() as conn:
            yield conn

    async def migrate(self) -> None:
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
        self._writer.dispose()
        self._reader.dispose()
        self._soft.dispose()

    # -- sessions ---------------------------------------------------------------------------------
    async def create(self, session: Session) -> Session:
        def run() -> Session:
            h = self._hot
            with self._fast_write(session.id) as t:
                row = t.one(h.state, sid=session.id)
                if row is not None:
                    if row[0] in _LIVE:
                        raise SessionConflict(f"session {session.id} already exists")
                    self._purge(t, session.id)  # a dead one: replace it
                t.run(h.add_session, **_session_values(session))
            return session

        try:
            return await self._run(run)
        except self._integrity_errors as exc:
            # PostgreSQL: FOR UPDATE cannot lock a row that does not exist yet, so two creators of one id
            # both insert and the primary key refuses the second
            raise SessionConflict(f"session {session.id} already exists") from exc

    async def get(self, session_id: str) -> Session | None:
        def run() -> Session | None:
            with self._fast_read(single=True) as t:
                row = t.one(self._hot.get, sid=session_id)
            return _tuple_to_session(row) if row else None

        return await self._run(run)

    async def by_target(self, namespace: str, key: str) -> list[Session]:
        def run() -> list[Session]:
            q = (sa.select(sessions)
                 .where(sessions.c.namespace == namespace, sessions.c.key == key, sessions.c.state.in_(_LIVE))
                 .order_by(sessions.c.created_at))
            with self._read() as conn:
                return [_row_to_session(r) for r in conn.execute(q)]

        return await self._run(run)

    async def list_sessions(self, *, owner: str | None = None, family: str | None = None,
                   states: tuple[SessionState, ...] | None = None, limit: int = 100,
                   after: str = "") -> list[Session]:
        def run() -> list[Session]:
            q = sa.select(sessions).where(sessions.c.id > after)
            if owner is not None:
                q = q.where(sessions.c.owner == owner)
            if family is not None:
                q = q.where(sessions.c.family == family)
            if states is not None:
                q = q.where(sessions.c.state.in_([s.value for s in states]))
            q = q.order_by(sessions.c.id).limit(limit)
            with self._read() as conn:
                return [_row_to_session(r) for r in conn.execute(q)]

        return await self._run(run)

    # -- ranges -----------------------------------------------------------------------------------
    async def ranges(self, session_id: str) -> RangeSet:
        def run() -> RangeSet:
            with self._fast_read(single=True) as t:
                return RangeSet.from_sorted((a, b) for a, b in t.all(self._hot.ranges, sid=session_id))

        return await self._run(run)

    async def missing(self, session_id: str, length: int, limit: int | None = None) -> list[Range]:
        def run() -> list[Range]:
            h = self._hot
            with self._fast_read(single=True) as t:
                if limit is None:
                    rows = t.all(h.ranges, sid=session_id)
                else:  # stored ranges are merged, so limit + 1 of them bound at least limit gaps
                    rows = t.all(h.first_ranges, sid=session_id, lim=limit + 1)
            return gaps_of_sorted(((a, b) for a, b in rows), length, limit)

        return await self._run(run)

    def _overlapping(self, t: Txn, session_id: str, start: int, end: int, touching: bool) -> list[Range]:
        """Stored ranges intersecting [start, end) (or touching it, for merges), unclipped."""
        h = self._hot
        prev = t.one(h.range_before, sid=session_id, start=start)
        rest = t.all(h.ranges_touching if touching else h.ranges_within, sid=session_id, start=start, end=end)
        out: list[Range] = []
        if prev is not None and (prev[1] >= start if touching else prev[1] > start):
            out.append((prev[0], prev[1]))
        out.extend((a, b) for a, b in rest)
        return out

    async def received_within(self, session_id: str, start: int, end: int) -> list[Range]:
        def run() -> list[Range]:
            with self._fast_read() as t:
                found = self._overlapping(t, session_id, start, end, touching=False)
            return [(max(s, start), min(e, end)) for s, e in found]

        return await self._run(run)

    async def claimed(self, session_id: str, start: int, end: int) -> bool:
        def run() -> bool:
            with self._fast_read(single=True) as t:
                return t.one(self._hot.claimed, sid=session_id, start=start, end=end) is not None

        return await self._run(run)

    async def claim(self, session_id: str, token: str, start: int, end: int, now: float,
                    lease: float) -> Claim:
        def run() -> Claim:
            with self._fast_write(session_id, soft=True) as t:
                if t.one(self._hot.state, sid=session_id) is None:
                    raise SessionNotFound()
                return self._claim(t, session_id, token, start, end, now, now + lease)

        return await self._run(run)

    async def claim_append(self, session_id: str, token: str, offset: int, end: int, now: float,
                           lease: float, stale_before: float) -> Appending:
        def run() -> Appending:
            with self._fast_write(session_id, soft=True) as t:
                row = t.one(self._hot.get, sid=session_id)
                if row is None:
                    raise SessionNotFound()
                session = _tuple_to_session(row)
                found = t.one(self._hot.prefix, sid=session_id)  # ranges are merged: the one at 0 is the prefix
                prefix = int(found[0]) if found else 0
                if offset != prefix or session.state is not SessionState.OPEN:
                    return Appending(session, prefix, None)
                claim = self._claim(t, session_id, token, offset, end, stale_before, now + lease,
                                    all_or_nothing=True)
                return Appending(session, prefix, claim)

        return await self._run(run)

    def _claim(self, t: Txn, session_id: str, token: str, start: int, end: int, drop_before: float,
               lease_until: float, all_or_nothing: bool = False) -> Claim:
        """Claim the gaps of [start, end) no live claim holds (with ``all_or_nothing``, nothing when any
        is held), after dropping the session's claims whose lease ends before ``drop_before``."""
        h = self._hot
        t.run(h.drop_expired, sid=session_id, before=drop_before)
        gaps = RangeSet(self._overlapping(t, session_id, start, end, touching=False)).gaps(start, end)
        if not gaps:
            return Claim([], [])
        held = RangeSet()
        for s, e in t.all(h.claims_within, sid=session_id, start=start, end=end):
            held.add(s, e)
        to_write: list[Range] = []
        busy: list[Range] = []
        for gs, ge in gaps:
            busy.extend(held.overlapping(gs, ge))
            to_write.extend(held.gaps(gs, ge))
        if busy and all_or_nothing:
            return Claim([], busy)
        if to_write:
            t.many(h.add_claim, [{"session_id": session_id, "start": s, "stop": e, "token": token,
                                  "lease_until": lease_until} for s, e in to_write])
        return Claim(to_write, busy)

    async def renew(self, session_id: str, token: str, now: float, lease: float) -> bool:
        def run() -> bool:
            with self._fast_write(session_id, soft=True) as t:
                return bool(t.run(self._hot.renew, sid=session_id, tok=token, until=now + lease))

        return await self._run(run)

    async def record(self, session_id: str, token: str, written: list[Range], now: float,
                     expires_at: float, length: int | None = None) -> Session:
        def run() -> Session:
            h = self._hot
            with self._fast_write(session_id) as t:
                row = t.one(h.get, sid=session_id)
                if row is None:
                    raise SessionNotFound()
                before = _tuple_to_session(row)
                if written and before.state.value not in _LIVE:
                    raise SessionGone("the upload session was deleted or expired while it was written")
                # dropping the token's claims tells whether it still held them (one statement, not two)
                dropped = t.run(h.drop_token, sid=session_id, tok=token)
                if written and not dropped:
                    raise WriteInterrupted("another request took over this range")
                added = 0
                for start, end in written:
                    added += self._merge(t, session_id, start, end)
                # the session row is locked for this transaction, so the new values follow from the old
                after = before.evolve(received=before.received + added, version=before.version + 1,
                                      modified_at=now, expires_at=expires_at,
                                      length=length if length is not None and before.length is None
                                      else before.length)
                t.run(h.bump, sid=session_id, new_received=after.received, new_version=after.version,
                      new_modified=now, new_expires=expires_at, new_length=after.length)
                return after

        return await self._run(run)

    def _merge(self, t: Txn, session_id: str, start: int, end: int) -> int:
        """Merge [start, end) into the stored ranges; return how many bytes were new."""
        if start >= end:
            return 0
        found = self._overlapping(t, session_id, start, end, touching=True)
        new_start, new_end = start, end
        already = 0
        for s, e in found:
            already += max(0, min(e, end) - max(s, start))
            new_start, new_end = min(new_start, s), max(new_end, e)
        if found:  # they are consecutive: no other stored range starts between the first and the last
            t.run(self._hot.drop_ranges, sid=session_id, lo=found[0][0], hi=found[-1][0])
        t.run(self._hot.add_range, session_id=session_id, start=new_start, stop=new_end)
        return (end - start) - already

    async def release(self, session_id: str, token: str) -> None:
        def run() -> None:
            with self._fast_write(session_id, soft=True) as t:
                t.run(self._hot.drop_token, sid=session_id, tok=token)

        await self._run(run)

    async def update(self, session_id: str, expected_version: int, **fields: Any) -> Session:
        def run() -> Session:
            with self._fast_write(session_id) as t:
                return self._update(t, session_id, expected_version, fields)

        return await self._run(run)

    async def update_many(self, changes: list[tuple[str, int, dict[str, Any]]]) -> list[Session]:
        def run() -> list[Session]:
            with self._fast_write() as t:
                if not self.sqlite:  # lock the rows in one order, so two batches cannot deadlock
                    for sid in sorted({c[0] for c in changes}):
                        t.one(self._hot.lock, sid=sid)
                return [self._update(t, sid, version, fields) for sid, version, fields in changes]

        return await self._run(run)

    def _update(self, t: Txn, session_id: str, expected_version: int, fields: dict[str, Any]) -> Session:
        values = dict(fields)
        for name in _JSON_FIELDS:
            if name in values:
                values[name] = json.dumps(values[name])
        if "state" in values:
            values["state"] = SessionState(values["state"]).value
        names = tuple(sorted(values))
        changed = t.run(self._update_statement(names), sid=session_id, expected=expected_version,
                        **{f"new_{n}": v for n, v in values.items()})
        row = t.one(self._hot.get, sid=session_id)
        if row is None:
            raise SessionNotFound()
        if not changed:
            raise Conflict("session changed concurrently")
        return _tuple_to_session(row)

    def _update_statement(self, names: tuple[str, ...]) -> Prepared:
        """The compare-and-set UPDATE of these columns, prepared once per combination (a handful occur)."""
        stmt = self._updates.get(names)
        if stmt is None:
            values: dict[str, Any] = {n: sa.bindparam(f"new_{n}") for n in names}
            values["version"] = sessions.c.version + 1
            stmt = Prepared(sessions.update().where(sessions.c.id == sa.bindparam("sid"),
                                                    sessions.c.version == sa.bindparam("expected")).values(**values),
                            self._writer.dialect)
            self._updates[names] = stmt
        return stmt

    async def expired(self, now: float, limit: int) -> list[Session]:
        def run() -> list[Session]:
            q = (sa.select(sessions).where(sessions.c.state.in_(_LIVE), sessions.c.expires_at < now)
                 .order_by(sessions.c.expires_at).limit(limit))
            with self._read() as conn:
                return [_row_to_session(r) for r in conn.execute(q)]

        return await self._run(run)

    def _purge(self, t: Txn, session_id: str) -> None:
        for stmt in (self._hot.drop_all_ranges, self._hot.drop_all_claims, self._hot.drop_session):
            t.run(stmt, sid=session_id)

    async def purge(self, session_id: str) -> None:
        def run() -> None:
            with self._fast_write(session_id) as t:
                self._purge(t, session_id)

        await self._run(run)

    async def purge_dead(self, before: float) -> int:
        def run() -> int:
            with self._fast_write() as t:
                ids = [sid for (sid,) in t.all(self._hot.dead, before=before)]
                for sid in ids:
                    self._purge(t, sid)
                return len(ids)

        return await self._run(run)

    # -- resources --------------------------------------------------------------------------------
    @staticmethod
    def _row_to_resource(row: Any) -> Resource:
        return _resource_from(row._mapping)

    async def put_resource(self, resource: Resource) -> Resource:
        def run() -> Resource:
            h = self._hot
            with self._fast_write() as t:
                if t.one(h.resource_exists, rkind=resource.kind, rid=resource.id):
                    raise AlreadyExists(f"{resource.kind} {resource.id} already exists")
                t.run(h.add_resource, kind=resource.kind, id=resource.id, tenant=resource.tenant,
                      owner=resource.owner, parent=resource.parent, data=json.dumps(resource.data),
                      created_at=resource.created_at, modified_at=resource.modified_at, version=resource.version)
            return resource

        try:
            return await self._run(run)
        except self._integrity_errors as exc:  # a concurrent insert of the same (kind, id) on PostgreSQL
            raise AlreadyExists(f"{resource.kind} {resource.id} already exists") from exc

    async def get_resource(self, kind: str, resource_id: str) -> Resource | None:
        def run() -> Resource | None:
            with self._fast_read(single=True) as t:
                row = t.one(self._hot.get_resource, rkind=kind, rid=resource_id)
            return _tuple_to_resource(row) if row else None

        return await self._run(run)

    async def update_resource(self, kind: str, resource_id: str, expected_version: int,
                              data: dict[str, Any], now: float) -> Resource:
        def run() -> Resource:
            with self._write() as conn:
                res = conn.execute(resources.update().where(
                    resources.c.kind == kind, resources.c.id == resource_id,
                    resources.c.version == expected_version).values(
                    data=json.dumps(data), modified_at=now, version=resources.c.version + 1))
                row = conn.execute(sa.select(resources).where(resources.c.kind == kind,
                                                              resources.c.id == resource_id)).first()
                if row is None:
                    raise NotFound(f"{kind} {resource_id} does not exist")
                if not res.rowcount:
                    raise Conflict(f"{kind} {resource_id} changed concurrently")
                return self._row_to_resource(row)

        return await self._run(run)

    async def list_resources(self, kind: str, *, tenant: str | None = None, parent: str | None = None,
                             owner: str | None = None, limit: int = 1000, after: str = "") -> list[Resource]:
        def run() -> list[Resource]:
            q = sa.select(resources).where(resources.c.kind == kind, resources.c.id > after)
            if tenant is not None:
                q = q.where(resources.c.tenant == tenant)
            if parent is not None:
                q = q.where(resources.c.parent == parent)
            if owner is not None:
                q = q.where(resources.c.owner == owner)
            with self._read() as conn:
                return [self._row_to_resource(r) for r in conn.execute(q.order_by(resources.c.id).limit(limit))]

        return await self._run(run)

    async def delete_resources(self, kind: str, resource_ids: list[str]) -> int:
        def run() -> int:
            deleted = 0
            with self._write() as conn:
                for i in range(0, len(resource_ids), 500):  # bounded IN lists
                    res = conn.execute(resources.delete().where(resources.c.kind == kind,
                                                                resources.c.id.in_(resource_ids[i:i + 500])))
                    deleted += res.rowcount
            return deleted

        return await self._run(run) if resource_ids else 0

    async def delete_resource(self, kind: str, resource_id: str) -> bool:
        def run() -> bool:
            with self._write() as conn:
                res = conn.execute(resources.delete().where(resources.c.kind == kind,
                                                            resources.c.id == resource_id))
                return bool(res.rowcount)

        return await self._run(run)
