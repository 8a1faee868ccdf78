"""The event outbox port: lifecycle events kept in the metadata store until some live node delivers them.

Events are rows in the store, not messages in a process: a node that dies does not take its undelivered
events with it. The engine writes an event in the *same transaction* as the state change that causes it
where the store lets it (``record`` completing a session, ``update`` / ``update_many`` to COMMITTED,
DELETED, EXPIRED, a deferred length completing a tus upload); ``created`` is written right after its
session is inserted (a crash between the two loses that one event). ``progress`` never reaches the
outbox: it would add a write per chunk, so it stays in-process (:mod:`chunkd.core.events`).

``completed`` and ``committed`` are :data:`ONCE_KINDS`: at most one row per session (and incarnation of
its id), whatever races -- the store ignores a second insert (a unique key), so two nodes finishing one
commit still produce one ``committed``. Delivery is at least once: a claimed row is leased on the
store's clock to one deliverer; a deliverer that dies (or whose receiver fails) leaves it to be claimed
again once its lease ends, so receivers de-duplicate by the event id.

Every implementation must pass ``tests/conformance/metadata_suite.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from chunkd.core.models import Session

__all__ = ["DURABLE_KINDS", "ONCE_KINDS", "EventOutbox", "NewEvent", "OutboxEvent"]

ONCE_KINDS = frozenset({"completed", "committed"})
DURABLE_KINDS = frozenset({"created", "completed", "committed", "deleted", "expired"})


@dataclass(frozen=True)
class NewEvent:
    """An event to write: the store snapshots the session row (as the transaction leaves it) into it."""

    kind: str
    session_id: str
    at: float
    detail: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboxEvent:
    """A claimed event: ``id`` is stable across attempts (receivers de-duplicate on it); ``attempts``
    counts claims, this one included."""

    id: str
    kind: str
    session: Session
    at: float
    detail: dict[str, object]
    attempts: int


class EventOutbox(Protocol):
    """Undelivered events. Every method is one transaction, safe from many processes on many machines."""

    async def add_events(self, events: Sequence[NewEvent]) -> int:
        """Insert ``events`` (sessions that no longer exist are skipped); returns how many rows were
        added. Idempotent for :data:`ONCE_KINDS`: a second one for the same session adds nothing."""

    async def claim_events(self, node: str, now: float, lease: float, limit: int) -> list[OutboxEvent]:
        """Lease up to ``limit`` undelivered events that are due (``next attempt <= now``) and not leased
        by a live claim, oldest first, to ``node`` until ``now + lease``. Two concurrent claimers never
        get the same event; an event whose lease ended is claimed again (take-over)."""

    async def event_delivered(self, event_id: str, node: str, now: float) -> bool:
        """Mark the event delivered; False (nothing changes) when ``node`` no longer holds its lease."""

    async def event_failed(self, event_id: str, node: str, now: float, retry_at: float | None) -> bool:
        """Give the event back for another attempt at ``retry_at``, or abandon it (None). False when
        ``node`` no longer holds its lease."""

    async def purge_events(self, before: float, limit: int = 1000) -> int:
        """Remove events delivered or abandoned before ``before``; returns how many."""
