"""The session metadata port: sessions, their received ranges and pieces, and write claims.

The store is the only place where processes (and machines) meet: every rule that must hold across them
(one writer per byte, no acknowledged range lost, one committer) is enforced by a transaction here.

A write goes through a *claim*: the writer claims the gaps of its range that nobody has received or
holds (:meth:`SessionStore.claim`), writes them into the byte store as pieces, then records the pieces
(:meth:`SessionStore.record`), which makes them part of the session in the same transaction that drops
the claim. A claim is exclusive and has a lease; the engine's claim policy (:mod:`chunkd.core.claims`)
renews it while bytes flow and takes over claims whose lease ended. Times passed in (``now``) come from
the engine's clock, which follows the metadata store's clock (:mod:`chunkd.core.clock`).

Every implementation must pass ``tests/conformance/metadata_suite.py``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from chunkd.core.models import Piece, Session, SessionState
from chunkd.core.outbox import NewEvent
from chunkd.core.ranges import Range, RangeSet

__all__ = [
    "BlockingWrites",
    "Claim",
    "ClaimMode",
    "Claimed",
    "Guard",
    "HeldWrites",
    "MetadataBackend",
    "MetadataStore",
    "Recorded",
    "SessionChanges",
    "SessionQuery",
    "SessionStore",
    "ToRecord",
    "WriteIntent",
]


class ClaimMode(enum.Enum):
    RANGE = "range"  # claim the unreceived, unheld gaps of [start, end) (any order, parallel writers)
    APPEND = "append"  # start must equal the contiguous received prefix; all of [start, end) or nothing
    ALLOCATE = "allocate"  # claim end - start fresh bytes after everything received or claimed so far


@dataclass(frozen=True)
class Guard:
    """A condition on a resource that a write depends on: ``data[field] == value`` of resource
    ``(kind, id)``. Checked in the claim and in the record transaction (on PostgreSQL the resource row
    is share-locked, so a concurrent change of the resource waits for the record)."""

    kind: str
    id: str
    field: str
    value: str


@dataclass(frozen=True)
class WriteIntent:
    """What a writer wants to claim. ``create`` is inserted first when no live session has the id (an
    existing dead one is replaced), so the first chunk of a session costs no extra transaction."""

    session_id: str
    token: str
    start: int
    end: int
    mode: ClaimMode = ClaimMode.RANGE
    create: Session | None = None
    guard: Guard | None = None


@dataclass(frozen=True)
class Claim:
    """The ranges the token now holds and must write, and the ranges of its request that other live
    claims hold."""

    to_write: list[Range]
    busy: list[Range]
    taken_over: int = 0  # claims of other writers whose lease had ended, dropped by this claim (take-overs)


@dataclass(frozen=True)
class Claimed:
    """Result of :meth:`SessionStore.claim`: the session as the transaction saw it, its contiguous
    received prefix, whether the transaction created it, the guard's resource state (``""`` when it
    is missing, None without a guard), and the claim -- None when nothing could be claimed: the session
    is not open, an append's offset is not the prefix, or the guard failed."""

    session: Session
    prefix: int
    claim: Claim | None
    created: bool = False
    guard_state: str | None = None


@dataclass(frozen=True)
class Recorded:
    """Result of :meth:`SessionStore.record`: the session after it, and its first missing ranges when
    the caller asked for them."""

    session: Session
    missing: list[Range] | None = None


@dataclass(frozen=True)
class SessionChanges:
    """Typed fields of a compare-and-set update; None leaves a field as it is."""

    state: SessionState | None = None
    length: int | None = None
    received: int | None = None
    modified_at: float | None = None
    expires_at: float | None = None
    composed_into: str | None = None
    extra: dict[str, Any] | None = None

    def as_columns(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass(frozen=True)
class SessionQuery:
    """Filters of :meth:`SessionStore.find`; None means any."""

    owner: str | None = None
    family: str | None = None
    namespace: str | None = None
    key: str | None = None
    states: tuple[SessionState, ...] | None = None
    storage_ref: str | None = None
    after: str = ""
    limit: int = 100


class MetadataBackend(Protocol):
    """Life cycle and identity of a metadata store."""

    name: str

    async def migrate(self) -> None:
        """Create or upgrade the schema. Idempotent; safe to run from several processes at once."""

    async def close(self) -> None:
        """Release connections."""

    async def server_time(self) -> float:
        """The store's clock (Unix seconds): what every node's leases and expiries are measured on."""


class SessionStore(Protocol):
    """Persistent session records. All methods are one transaction each and safe to call
    concurrently from many processes on many machines."""

    async def create(self, session: Session) -> Session:
        """Insert a new session with no ranges. An existing *dead* session (deleted/expired) with the
        same id is replaced. Raises SessionConflict if a live session has that id, also when another
        process creates it concurrently."""

    async def get(self, session_id: str) -> Session | None:
        """The session, dead or alive, or None."""

    async def find(self, query: SessionQuery) -> list[Session]:
        """Sessions matching ``query``, ordered by id from ``query.after`` (keyset pagination)."""

    async def claim(self, intent: WriteIntent, now: float, lease: float) -> Claimed:
        """Drop the session's claims whose lease ended before ``now`` (take-over), then claim for
        ``intent.token`` what ``intent.mode`` allows, with a lease until ``now + lease``. Ranges the same
        token already holds are returned in ``to_write`` again (a waiting writer re-claims). Raises
        SessionNotFound when the session does not exist and ``intent.create`` is None."""

    async def renew(self, session_id: str, token: str, now: float, lease: float) -> bool:
        """Extend the token's claims to ``now + lease``; False when they were taken over (stop writing)."""

    async def record(self, session_id: str, token: str, pieces: Sequence[Piece], now: float, expires_at: float,
                     *, length: int | None = None, missing_limit: int | None = None,
                     guard: Guard | None = None, on_complete: Sequence[NewEvent] = ()) -> Recorded:
        """Atomically add ``pieces`` (with their handles) and their ranges to the session, drop the
        token's claims and bump the session (``received``, ``version``, ``modified_at``, ``expires_at``;
        ``length`` when given and the session had none). When this completes a ``commit_on_complete``
        session that is open, it becomes COMMITTING in the same transaction. When this adds bytes that
        complete the session, ``on_complete`` events are written to the outbox in the same transaction
        (:mod:`chunkd.core.outbox`). Once this returns, the pieces are part of the session for good.

        Raises WriteInterrupted when ``pieces`` is non-empty and the token no longer holds a claim,
        SessionGone when the session is dead, SessionNotFound when it does not exist, GuardFailed when
        ``guard`` does not hold; nothing changes then.
        """

    async def release(self, session_id: str, token: str) -> None:
        """Drop the token's claims without recording anything. Idempotent."""

    async def ranges(self, session_id: str) -> RangeSet:
        """Every received range of the session."""

    async def missing(self, session_id: str, length: int, limit: int | None = None) -> list[Range]:
        """The gaps in ``[0, length)`` between received ranges, in order; only the first ``limit`` when
        given, at a cost of O(limit) however many ranges there are."""

    async def pieces(self, session_id: str) -> list[Piece]:
        """The session's recorded pieces, ordered by start."""

    async def update(self, session_id: str, expected_version: int, changes: SessionChanges,
                     events: Sequence[NewEvent] = ()) -> Session:
        """Compare-and-set: apply ``changes`` if the version is still ``expected_version``; bumps the
        version, and writes ``events`` to the outbox in the same transaction (only when the change
        applies). Raises Conflict when the version moved and SessionNotFound when the row is gone."""

    async def update_many(self, changes: Sequence[tuple[str, int, SessionChanges]],
                          events: Sequence[NewEvent] = ()) -> list[Session]:
        """:meth:`update` for several sessions in one transaction, all or nothing (events too)."""

    async def expired(self, now: float, limit: int) -> list[Session]:
        """Live sessions whose ``expires_at`` is before ``now``, oldest expiry first."""

    async def purge_dead(self, before: float, limit: int = 1000) -> list[Session]:
        """Remove dead sessions last modified before ``before`` (with their ranges, pieces and claims);
        returns what was removed, so that the caller can drop their bytes."""


@runtime_checkable
class BlockingWrites(Protocol):
    """Optional: the per-chunk calls of :class:`SessionStore` as plain functions that block the calling
    thread, with the same contracts. The engine runs a small write's claim, data flush and record in one
    worker thread with them (one thread hop per chunk instead of three; :mod:`chunkd.core.small_writes`).
    Never call them on the event loop."""

    def claim_blocking(self, intent: WriteIntent, now: float, lease: float) -> Claimed:
        """:meth:`SessionStore.claim`."""

    def renew_blocking(self, session_id: str, token: str, now: float, lease: float) -> bool:
        """:meth:`SessionStore.renew`."""

    def record_blocking(self, session_id: str, token: str, pieces: Sequence[Piece], now: float,
                        expires_at: float, *, length: int | None = None, missing_limit: int | None = None,
                        guard: Guard | None = None, on_complete: Sequence[NewEvent] = ()) -> Recorded:
        """:meth:`SessionStore.record`."""

    def release_blocking(self, session_id: str, token: str) -> None:
        """:meth:`SessionStore.release`."""


@dataclass(frozen=True)
class ToRecord:
    """What a held write (:class:`HeldWrites`) records once its bytes are durable: the arguments of
    :meth:`SessionStore.record` that depend on what the claim read."""

    pieces: Sequence[Piece]
    now: float
    expires_at: float
    missing_limit: int | None = None
    on_complete: Sequence[NewEvent] = ()


@runtime_checkable
class HeldWrites(Protocol):
    """Optional: claim, write and record of a small chunk in ONE metadata transaction, for stores whose
    row locks let other writers wait while the bytes are written (PostgreSQL). Instead of a claim row and
    its lease, the transaction keeps the session's row locked from the claim's reads to the record's
    commit: every claim, record, renewal, release and update of that session waits meanwhile, so no other
    writer can take or record the range. One commit and two round trips per chunk instead of two and four;
    the cost is that a write stalled in its flush holds the session's other writers for that time (the
    streaming path, which any chunk larger than ``SMALL_BODY`` takes, never holds a lock while writing).
    A store bounds both sides: how long a writer waits for the lock (it then raises StorageUnavailable), and
    how long a transaction may sit idle before the database ends it (releasing the lock; the stalled write
    then fails and records nothing, though its bytes may still land, as a write stalled past its claim's
    lease may). Blocking: call it from a worker thread."""

    def write_held_blocking(self, intent: WriteIntent, now: float,
                            write: Callable[[Claimed], ToRecord | None]) -> tuple[Claimed, Recorded | None]:
        """Read and decide as :meth:`SessionStore.claim` would (no claim row is written; a created session
        is inserted before ``write`` runs, so a second creator of the same id waits and finds it), call
        ``write(claimed)`` with the session locked, and record what it returns in the same transaction
        (guard and session state were checked by the claim and stay locked), committed durably: a
        2xx may follow the return. ``write`` returning None commits what the claim did (a created session,
        dropped expired claims) and returns ``(claimed, None)``. An error of ``write`` or of the record
        rolls everything back, a created session included, and is raised; the bytes ``write`` wrote are
        then unrecorded garbage. Not idempotent, as ``record`` is not."""


@runtime_checkable
class CountsCommits(Protocol):
    """Optional: the store calls ``on_commit`` (when set) once for every write transaction it committed, a
    group commit's shared transaction once; never for a read or a rolled-back transaction. The call comes
    from the committing thread, after the commit: it must be cheap, thread-safe and must not raise."""

    on_commit: Callable[[], None] | None


class MetadataStore(MetadataBackend, SessionStore, Protocol):
    """What the engine needs of one metadata store (sessions; resources are a port of their own)."""
