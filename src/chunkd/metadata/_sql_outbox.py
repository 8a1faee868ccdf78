"""The event outbox of the SQL store (:mod:`chunkd.core.outbox`): rows in ``events``.

Events are inserted inside the transactions of the state changes that cause them (``record``, ``update``,
``update_many`` call :meth:`SqlOutbox._write_events` with the session as the transaction leaves it), so
a committed state change and its event are durable together. Claims lease rows to one deliverer:
PostgreSQL picks candidates with ``FOR UPDATE SKIP LOCKED`` (concurrent claimers skip each other's rows
instead of waiting), SQLite's ``BEGIN IMMEDIATE`` serialises claimers; the UPDATE then re-checks that
each row is still unleased (a compare-and-set), so no row is leased twice.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from chunkd.core.models import Session
from chunkd.core.outbox import ONCE_KINDS, NewEvent, OutboxEvent
from chunkd.metadata._prepared import Txn
from chunkd.metadata._sql_base import SqlBase
from chunkd.metadata._sql_rows import session_from, session_from_tuple, session_values
from chunkd.metadata.schema import events

__all__ = ["SqlOutbox"]

_e = events.c


class SqlOutbox(SqlBase):
    def _write_events(self, t: Txn, new: Sequence[NewEvent], snapshots: Mapping[str, Session]) -> int:
        """Insert ``new`` in transaction ``t``; the session document is ``snapshots[id]`` or, when absent,
        the row as ``t`` sees it (missing sessions are skipped). Returns the rows added."""
        added = 0
        for event in new:
            session = snapshots.get(event.session_id)
            if session is None:
                row = t.one(self._hot.get, sid=event.session_id)
                if row is None:
                    continue
                session = session_from_tuple(row)
            event_id = uuid.uuid4().hex
            # once per incarnation of a session id: a dead session's id may be reused by a new session
            dedup = f"{event.kind}:{session.id}:{session.created_at!r}" if event.kind in ONCE_KINDS else event_id
            added += t.run(self._hot.add_event, id=event_id, dedup=dedup, kind=event.kind, session_id=session.id,
                           session=json.dumps(session_values(session)), detail=json.dumps(event.detail, default=str),
                           at=event.at, attempts=0, next_attempt=0.0, claimed_by="", lease_until=0.0, done_at=None,
                           outcome="")
        return added

    async def add_events(self, new: Sequence[NewEvent]) -> int:
        if not new:
            return 0

        def run() -> int:
            with self._fast_write() as t:
                return self._write_events(t, new, {})

        return await self._run(run)

    async def claim_events(self, node: str, now: float, lease: float, limit: int) -> list[OutboxEvent]:
        due = sa.and_(_e.done_at.is_(None), _e.next_attempt <= now, _e.lease_until < now)

        def any_due() -> bool:  # a read first: idle polls of every node must not queue for the write lock
            with self._read() as conn:
                return conn.execute(sa.select(_e.id).where(due).limit(1)).first() is not None

        def run() -> list[OutboxEvent]:
            with self._write() as conn:
                pick = sa.select(_e.id).where(due).order_by(_e.at).limit(limit)
                if not self.sqlite:
                    pick = pick.with_for_update(skip_locked=True)
                ids = [r[0] for r in conn.execute(pick)]
                if not ids:
                    return []
                conn.execute(events.update().where(_e.id.in_(ids), due).values(
                    claimed_by=node, lease_until=now + lease, attempts=_e.attempts + 1))
                rows = conn.execute(sa.select(events).where(_e.id.in_(ids), _e.claimed_by == node,
                                                            _e.lease_until == now + lease).order_by(_e.at))
                return [_claimed(r._mapping) for r in rows]

        if not await self._run(any_due):
            return []
        return await self._run(run)

    def _finish(self, event_id: str, node: str, now: float, values: dict[str, Any]) -> bool:
        with self._write() as conn:
            # a lease that ended but was not taken over yet still counts: the delivery happened
            mine = sa.and_(_e.id == event_id, _e.claimed_by == node, _e.done_at.is_(None))
            changed = conn.execute(events.update().where(mine).values(claimed_by="", lease_until=0.0, **values))
            return bool(changed.rowcount)

    async def event_delivered(self, event_id: str, node: str, now: float) -> bool:
        return await self._run(lambda: self._finish(event_id, node, now, {"done_at": now, "outcome": "delivered"}))

    async def event_failed(self, event_id: str, node: str, now: float, retry_at: float | None) -> bool:
        values: dict[str, Any] = {"next_attempt": retry_at} if retry_at is not None else \
            {"done_at": now, "outcome": "abandoned"}
        return await self._run(lambda: self._finish(event_id, node, now, values))

    async def purge_events(self, before: float, limit: int = 1000) -> int:
        def run() -> int:
            with self._write() as conn:
                old = sa.select(_e.id).where(_e.done_at.is_not(None), _e.done_at < before).limit(limit)
                if not self.sqlite:
                    old = old.with_for_update(skip_locked=True)
                ids = [r[0] for r in conn.execute(old)]
                if ids:
                    conn.execute(events.delete().where(_e.id.in_(ids)))
                return len(ids)

        return await self._run(run)


def _claimed(m: Mapping[Any, Any]) -> OutboxEvent:
    return OutboxEvent(id=m["id"], kind=m["kind"], session=session_from(json.loads(m["session"])), at=m["at"],
                       detail=json.loads(m["detail"]), attempts=m["attempts"])
