"""The session metadata interface.

The store is the only place where processes meet: every rule that must hold across server processes
(one writer per byte, no acknowledged range lost, one committer) is enforced by a transaction here.

Writes to a session go through *claims*: a writer first claims the gaps of its range it will write
(``claim``), writes them, then ``record``\\ s them. A claim is exclusive and has a lease; a claim whose
lease ran out may be taken by the next writer, and the old holder then learns from ``renew`` or
``record`` (WriteInterrupted) that it lost it. Because a holder always renews before writing once its
last renewal is older than ``renew_interval < lease``, it can never write into a range after another
writer took it over.

Every implementation must pass ``tests/conformance/metadata_suite.py`` (run against SQLite and PostgreSQL).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from chunkd.core.models import Resource, Session, SessionState
from chunkd.core.ranges import Range, RangeSet

__all__ = ["Appending", "Claim", "SessionStore"]


@dataclass(frozen=True)
class Claim:
    """Result of a claim: the ranges this writer now owns and must write, and the ranges of its request
    that other live writers are still writing."""

    to_write: list[Range]
    busy: list[Range]


@dataclass(frozen=True)
class Appending:
    """Result of :meth:`SessionStore.claim_append`: the session as the transaction saw it, its contiguous
    received prefix, and the claim, or None when nothing was claimed (the offset is not the prefix, or
    the session is not open)."""

    session: Session
    prefix: int
    claim: Claim | None


class SessionStore(Protocol):
    """Persistent session records. All methods are safe to call concurrently from many processes."""

    name: str

    async def migrate(self) -> None:
        """Create or upgrade the schema. Idempotent."""

    async def close(self) -> None:
        """Release connections."""

    async def create(self, session: Session) -> Session:
        """Insert a new session with no received ranges.

        An existing *dead* session (deleted/expired) with the same id is replaced. Raises
        SessionConflict if a live session has that id, also when another process creates it concurrently.
        """

    async def get(self, session_id: str) -> Session | None:
        """The session, dead or alive, or None."""

    async def by_target(self, namespace: str, key: str) -> list[Session]:
        """Live sessions for one target, oldest first."""

    async def list_sessions(
        self,
        *,
        owner: str | None = None,
        family: str | None = None,
        states: tuple[SessionState, ...] | None = None,
        limit: int = 100,
        after: str = "",
    ) -> list[Session]:
        """Sessions ordered by id, starting after ``after`` (keyset pagination)."""

    async def ranges(self, session_id: str) -> RangeSet:
        """Every received range of the session."""

    async def missing(self, session_id: str, length: int, limit: int | None = None) -> list[Range]:
        """The gaps in ``[0, length)`` between received ranges, in order; only the first ``limit`` when
        given, at a cost of O(limit) however many ranges there are."""

    async def received_within(self, session_id: str, start: int, end: int) -> list[Range]:
        """Received ranges intersecting ``[start, end)``, clipped to it. O(log n + k)."""

    async def claimed(self, session_id: str, start: int, end: int) -> bool:
        """True when any write claim, live or expired, intersects ``[start, end)``. A plain read (no
        write transaction, no commit): lets writers skip the take-over probe when nobody holds a claim."""

    async def claim(self, session_id: str, token: str, start: int, end: int, now: float,
                    lease: float) -> Claim:
        """Claim the not-yet-received parts of ``[start, end)`` that no live claim holds.

        Expired claims of the session are dropped first (take-over). Raises SessionNotFound if the
        session does not exist.
        """

    async def claim_append(self, session_id: str, token: str, offset: int, end: int, now: float,
                           lease: float, stale_before: float) -> Appending:
        """The per-chunk step of a sequential append, in one transaction: read the session and its
        contiguous received prefix and, when the session is open and ``offset`` equals the prefix,
        ``claim`` ``[offset, end)``, first dropping the session's claims whose lease ends before
        ``stale_before`` (``>= now``: writers that stopped renewing). While live claims overlap the
        range nothing is claimed and the claim's ``busy`` lists them. Raises SessionNotFound if the
        session does not exist.
        """

    async def renew(self, session_id: str, token: str, now: float, lease: float) -> bool:
        """Extend the token's claims; False if they were taken over (the writer must stop)."""

    async def record(self, session_id: str, token: str, written: list[Range], now: float,
                     expires_at: float, length: int | None = None) -> Session:
        """Atomically merge ``written`` into the received ranges, drop the token's claims and bump the
        session (``received``, ``version``, ``modified_at``, ``expires_at``; ``length`` when given and
        the session had none). Raises WriteInterrupted when ``written`` is non-empty and the token no
        longer holds a claim, SessionGone when ``written`` is non-empty and the session is dead
        (deleted/expired while the bytes were written), SessionNotFound when it does not exist.
        """

    async def release(self, session_id: str, token: str) -> None:
        """Drop the token's claims without recording anything."""

    async def update(self, session_id: str, expected_version: int, **fields: Any) -> Session:
        """Compare-and-set: change ``fields`` if the version is still ``expected_version``; bumps the
        version. Raises Conflict when the version moved and SessionNotFound when the row is gone."""

    async def update_many(self, changes: list[tuple[str, int, dict[str, Any]]]) -> list[Session]:
        """:meth:`update` for several sessions ``(id, expected_version, fields)`` in one transaction, all
        or nothing: when one raises Conflict or SessionNotFound, none changed. One commit instead of one
        per session (composing an object from many parts)."""

    async def expired(self, now: float, limit: int) -> list[Session]:
        """Live sessions whose ``expires_at`` is before ``now``."""

    async def purge(self, session_id: str) -> None:
        """Remove a session, its ranges and claims entirely."""

    async def purge_dead(self, before: float) -> int:
        """Remove dead sessions last modified before ``before``; how many."""

    # -- resources: small JSON documents of the front ends (printers, jobs, connectors, ...) ----------
    async def put_resource(self, resource: Resource) -> Resource:
        """Insert a resource; raises AlreadyExists if ``(kind, id)`` exists."""

    async def get_resource(self, kind: str, resource_id: str) -> Resource | None:
        """The resource or None."""

    async def update_resource(self, kind: str, resource_id: str, expected_version: int,
                              data: dict[str, Any], now: float) -> Resource:
        """Compare-and-set the document; bumps the version. Raises Conflict when the version moved,
        NotFound when the resource is gone."""

    async def list_resources(self, kind: str, *, tenant: str | None = None, parent: str | None = None,
                             owner: str | None = None, limit: int = 1000, after: str = "") -> list[Resource]:
        """Resources of a kind ordered by id, filtered, starting after ``after``."""

    async def delete_resource(self, kind: str, resource_id: str) -> bool:
        """Delete; False when it did not exist."""

    async def delete_resources(self, kind: str, resource_ids: list[str]) -> int:
        """Delete several in one transaction; how many existed."""
