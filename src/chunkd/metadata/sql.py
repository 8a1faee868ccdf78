"""Session metadata in SQLite or PostgreSQL through SQLAlchemy Core: the implementation of the core's
:class:`~chunkd.core.store.MetadataStore` and :class:`~chunkd.core.resources.ResourceStore` ports.

Received ranges are rows ``(session_id, start, stop)`` keyed by start and kept merged, so a write
touches only the neighbouring ranges it merges with and the first missing ranges cost O(limit); pieces
are rows ``(session_id, start, stop, ref, handle, tag)``, never merged. Connections and transactions:
:mod:`._sql_base`; the per-chunk transactions: :mod:`._sql_writes`; resources: :mod:`._sql_resources`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from chunkd.core.errors import Conflict, SessionConflict, SessionNotFound
from chunkd.core.models import Piece, Session
from chunkd.core.outbox import NewEvent
from chunkd.core.ranges import Range, RangeSet, gaps_of_sorted
from chunkd.core.store import SessionChanges, SessionQuery
from chunkd.metadata._prepared import Prepared, Txn
from chunkd.metadata._sql_resources import SqlResources
from chunkd.metadata._sql_rows import LIVE, column_values, piece_from, session_from, session_from_tuple, session_values
from chunkd.metadata._sql_writes import SqlWrites
from chunkd.metadata.schema import sessions

__all__ = ["SqlSessionStore"]


class SqlSessionStore(SqlWrites, SqlResources):
    """Metadata on SQLite (``sqlite:///path``) or PostgreSQL (``postgresql+psycopg://...``)."""

    # -- sessions ---------------------------------------------------------------------------------
    async def create(self, session: Session) -> Session:
        def run() -> Session:
            h = self._hot
            with self._fast_write(session.id) as t:
                row = t.one(h.state, sid=session.id)
                if row is not None:
                    if row[0] in LIVE:
                        raise SessionConflict(f"session {session.id} already exists")
                    self._purge(t, session.id)  # a dead one: replace it
                t.run(h.add_session, **session_values(session))
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
            return session_from_tuple(row) if row else None

        return await self._run(run)

    async def find(self, query: SessionQuery) -> list[Session]:
        def run() -> list[Session]:
            c = sessions.c
            q = sa.select(sessions).where(c.id > query.after)
            for column, value in ((c.owner, query.owner), (c.family, query.family), (c.namespace, query.namespace),
                                  (c.key, query.key), (c.storage_ref, query.storage_ref)):
                if value is not None:
                    q = q.where(column == value)
            if query.states is not None:
                q = q.where(c.state.in_([s.value for s in query.states]))
            with self._read() as conn:
                return [session_from(r._mapping) for r in conn.execute(q.order_by(c.id).limit(query.limit))]

        return await self._run(run)

    # -- ranges and pieces ------------------------------------------------------------------------
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

    async def pieces(self, session_id: str) -> list[Piece]:
        def run() -> list[Piece]:
            with self._fast_read(single=True) as t:
                return [piece_from(row) for row in t.all(self._hot.pieces, sid=session_id)]

        return await self._run(run)

    # -- compare-and-set --------------------------------------------------------------------------
    async def update(self, session_id: str, expected_version: int, changes: SessionChanges,
                     events: Sequence[NewEvent] = ()) -> Session:
        def run() -> Session:
            with self._fast_write(session_id) as t:
                done = self._update(t, session_id, expected_version, changes)
                self._write_events(t, events, {session_id: done})
                return done

        return await self._run(run)

    async def update_many(self, changes: Sequence[tuple[str, int, SessionChanges]],
                          events: Sequence[NewEvent] = ()) -> list[Session]:
        def run() -> list[Session]:
            with self._fast_write() as t:
                if not self.sqlite:  # lock the rows in one order, so two batches cannot deadlock
                    for sid in sorted({c[0] for c in changes}):
                        t.later(self._hot.lock, sid=sid)
                done = [self._update(t, sid, version, fields) for sid, version, fields in changes]
                self._write_events(t, events, {s.id: s for s in done})
                return done

        return await self._run(run)

    def _update(self, t: Txn, session_id: str, expected_version: int, changes: SessionChanges) -> Session:
        values = column_values(changes.as_columns())
        names = tuple(sorted(values))
        changed = t.run(self._update_statement(names), sid=session_id, expected=expected_version,
                        **{f"new_{n}": v for n, v in values.items()})
        row = t.one(self._hot.get, sid=session_id)
        if row is None:
            raise SessionNotFound()
        if not changed:
            raise Conflict("session changed concurrently")
        return session_from_tuple(row)

    def _update_statement(self, names: tuple[str, ...]) -> Prepared:
        """The compare-and-set UPDATE of these columns, prepared once per combination (a handful occur)."""
        stmt = self._updates.get(names)
        if stmt is None:
            values: dict[str, object] = {n: sa.bindparam(f"new_{n}") for n in names}
            values["version"] = sessions.c.version + 1
            stmt = Prepared(sessions.update().where(sessions.c.id == sa.bindparam("sid"),
                                                    sessions.c.version == sa.bindparam("expected")).values(**values),
                            self._writer.dialect)
            self._updates[names] = stmt
        return stmt

    # -- expiry -----------------------------------------------------------------------------------
    async def expired(self, now: float, limit: int) -> list[Session]:
        def run() -> list[Session]:
            q = (sa.select(sessions).where(sessions.c.state.in_(LIVE), sessions.c.expires_at < now)
                 .order_by(sessions.c.expires_at).limit(limit))
            with self._read() as conn:
                return [session_from(r._mapping) for r in conn.execute(q)]

        return await self._run(run)

    async def purge_dead(self, before: float, limit: int = 1000) -> list[Session]:
        def run() -> list[Session]:
            with self._fast_write() as t:
                dead = [session_from_tuple(row) for row in t.all(self._hot.dead, before=before, lim=limit)]
                for s in dead:
                    self._purge(t, s.id)
                return dead

        return await self._run(run)
