"""State and helpers every part of the engine shares (the engine is split by concept into mixins:
:mod:`.sessions`, :mod:`.writes`, :mod:`.commits`, :mod:`.objects`, :mod:`.expiry`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from chunkd.core.bytestore import ByteStore, Capabilities, detect_capabilities
from chunkd.core.clock import Clock
from chunkd.core.digests import DigestMismatch, ExpectedDigests
from chunkd.core.errors import (
    Conflict,
    InvalidRange,
    LengthMismatch,
    PermissionDenied,
    SessionConflict,
    SessionGone,
    SessionNotFound,
    TooLarge,
)
from chunkd.core.events import Event, EventBus
from chunkd.core.models import Session, SessionState
from chunkd.core.outbox import EventOutbox, NewEvent
from chunkd.core.principal import Principal
from chunkd.core.resources import ResourceStore
from chunkd.core.stats import EngineStats
from chunkd.core.store import MetadataStore, SessionChanges

log = logging.getLogger("chunkd.engine")


class Metadata(MetadataStore, ResourceStore, EventOutbox, Protocol):
    """One metadata store holds sessions, resources and the event outbox (the SQL store does all)."""


@dataclass(frozen=True)
class EngineConfig:
    """Engine tunables. Times are seconds."""

    session_ttl: float = 30 * 60  # idle lifetime of a session (Service Fabric's default)
    tombstone_ttl: float = 24 * 3600  # how long dead sessions are remembered (410 rather than 404)
    # A write claim not renewed for ``lease`` seconds may be taken over by the next writer of its range
    # (a client's retry after its connection or the node serving it died). Writers renew it before they
    # write once their last renewal is ``renew_interval`` old, so a stalled writer that wakes up learns
    # that it lost the claim before it can write into the range; ``lease - renew_interval`` is the margin
    # for a write that was already on its way.
    lease: float = 2.0
    renew_interval: float = 0.5
    busy_wait: float = 30.0  # how long a write waits for a live writer of an overlapping range
    commit_grace: float = 2.0  # a commit older than this is taken to have died with its process
    durable: bool = True  # fdatasync bytes before acknowledging them
    max_size: int = 1 << 40  # largest session or object, bytes
    # kinds written to the store's outbox for delivery by any node (webhooks); empty: none are written
    outbox_kinds: frozenset[str] = frozenset()


class EngineBase:
    """The engine's collaborators and the checks every operation shares."""

    def __init__(self, store: Metadata, storage: ByteStore, config: EngineConfig | None = None,
                 events: EventBus | None = None, clock: Clock = time.time) -> None:
        self.store = store
        self.storage = storage
        self.config = config or EngineConfig()
        self.events = events or EventBus()
        self.clock = clock
        self.capabilities: Capabilities = detect_capabilities(storage)
        self.stats = EngineStats()  # reports for metrics; the server replaces it (chunkd.server.metrics)
        self.digest_checks: dict[str, ExpectedDigests] = {}  # family -> where its sessions keep expected digests

    def expect_digests(self, family: str, expected: ExpectedDigests) -> None:
        """Check every commit of a ``family`` session against the digests ``expected(session)`` names (none:
        no check): a mismatch refuses the commit (:mod:`chunkd.core.digests`). Register it in every process
        that may finish such commits (the server builds its front ends in each worker)."""
        self.digest_checks[family] = expected

    # -- shared by the mixins (finish_commit is implemented in .commits) -------------------------------------------
    async def finish_commit(self, session: Session) -> Session:
        raise NotImplementedError

    async def _expire_if_due(self, session_id: str) -> None:  # implemented in .expiry
        raise NotImplementedError

    async def get_session(self, session_id: str, *, principal: Principal | None = None) -> Session:
        """The live session; SessionGone for a remembered dead one, SessionNotFound otherwise.

        A commit that died with its process (COMMITTING for longer than ``commit_grace``) is finished
        here, so that any read of a complete session repairs it.
        """
        session = await self.store.get(session_id)
        if session is None:
            raise SessionNotFound()
        if principal is not None:
            self._check_owner(session, principal)
        if session.state is SessionState.COMMITTING and not session.composed_into \
                and session.modified_at < self.clock() - self.config.commit_grace:
            session = await self._repair_commit(session)
        self._check_live(session)
        return session

    async def _repair_commit(self, session: Session) -> Session:
        self.stats.takeover("commit")
        log.info("take-over: finishing the commit of session %s, left unfinished by its request", session.id)
        try:
            return await self.finish_commit(session)
        except DigestMismatch as exc:  # the commit was refused and the session cancelled: a read sees it gone
            raise SessionGone(str(exc)) from exc
        except (Conflict, SessionNotFound):
            again = await self.store.get(session.id)
            if again is None:
                raise SessionNotFound() from None
            return again

    async def change(self, session: Session, changes: SessionChanges, events: Sequence[NewEvent] = ()) -> Session:
        """Compare-and-set ``changes`` against ``session.version`` (Conflict when it moved); ``events``
        (from :meth:`event`) reach the outbox in the same transaction."""
        return await self.store.update(session.id, session.version, changes, events)

    # -- checks -----------------------------------------------------------------------------------
    def _ttl(self, session: Session) -> float:
        return session.ttl if session.ttl is not None else self.config.session_ttl

    def expiry_for(self, session: Session) -> float:
        """When ``session`` expires if it is touched now."""
        return self.clock() + self._ttl(session)

    _expiry = expiry_for

    def _check_length(self, length: int | None) -> None:
        if length is not None and length < 0:
            raise InvalidRange("length must not be negative")
        if length is not None and length > self.config.max_size:
            raise TooLarge(f"the upload is larger than the maximum of {self.config.max_size} bytes")

    def _check_live(self, session: Session) -> None:
        if not session.state.alive:
            raise SessionGone()
        if session.expires_at < self.clock():
            raise SessionGone("the upload session expired")

    @staticmethod
    def check_target(session: Session, family: str, namespace: str, key: str, length: int | None) -> None:
        """The checks of reusing a session id for a target (Service Fabric's session-id per chunk)."""
        if session.family != family or session.namespace != namespace or session.key != key:
            raise SessionConflict("the session id is in use for another path")
        if session.length != length:
            raise LengthMismatch("the total length differs from the session's")

    @staticmethod
    def _check_owner(session: Session, principal: Principal) -> None:
        if session.owner != principal.key:
            raise PermissionDenied("the session belongs to another principal")

    def event(self, kind: str, session: Session, **detail: object) -> list[NewEvent]:
        """The outbox row for a lifecycle event, to pass to the transaction that causes it (then
        :meth:`emit` it with ``stored=True``); empty when the kind is not delivered from the outbox."""
        if kind not in self.config.outbox_kinds:
            return []
        return [NewEvent(kind, session.id, self.clock(), dict(detail))]

    async def emit(self, kind: str, session: Session, *, stored: bool = False, **detail: object) -> None:
        """Send a lifecycle event (``created``, ``progress``, ``completed``, ``committed``, ...) to the
        in-process bus, and to the outbox unless ``stored`` (the caller's transaction wrote it) -- then in
        a transaction of its own, after the state change: a crash between the two loses the event."""
        if not stored and kind in self.config.outbox_kinds:
            await self.store.add_events(self.event(kind, session, **detail))
        await self.events.emit(Event(kind, session, self.clock(), dict(detail)))

    _emit = emit
