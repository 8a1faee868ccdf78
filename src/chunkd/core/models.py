"""Value objects of the core: sessions, pieces of their bytes, published objects."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["Listing", "ObjectInfo", "Piece", "Session", "SessionState"]


class SessionState(enum.StrEnum):
    OPEN = "open"
    COMMITTING = "committing"
    COMMITTED = "committed"
    DELETED = "deleted"
    EXPIRED = "expired"

    @property
    def alive(self) -> bool:
        # identity, not ``in (...)``: str-enum equality is a string comparison, and this runs per chunk
        return self is SessionState.OPEN or self is SessionState.COMMITTING or self is SessionState.COMMITTED


@dataclass(frozen=True)
class Session:
    """One upload session.

    ``length`` is None while the total is unknown (tus deferred length). ``received`` counts the bytes
    recorded as durable. ``version`` increases on every change and is what compare-and-set updates check.
    ``storage_ref`` names the session's staging area in the byte store (opaque to the core).

    Core state is typed: ``ttl`` is the idle lifetime (None: the engine's ``session_ttl``);
    ``composed_into`` names the object (``namespace/key``) a part is being or was composed into, and
    while it is set no write, commit or delete may touch the part; ``commit_on_complete`` publishes the
    session as soon as its last byte is recorded (tus, Graph print), so that a crash between the last
    write and the commit is repaired by the next read of the session or by the sweep. ``extra``
    carries protocol-specific fields the core stores but never interprets.
    """

    id: str
    family: str
    owner: str
    namespace: str
    key: str
    length: int | None
    state: SessionState
    created_at: float
    modified_at: float
    expires_at: float
    tenant: str = ""
    content_type: str = ""
    name: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    received: int = 0
    version: int = 0
    storage_ref: str = ""
    ttl: float | None = None
    composed_into: str = ""
    commit_on_complete: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.length is not None and self.received >= self.length

    def evolve(self, **changes: Any) -> Session:
        return replace(self, **changes)


@dataclass(frozen=True)
class Piece:
    """An immutable run of a session's bytes, ``[start, end)``, as the byte store keeps it.

    ``ref`` is the staging ref of the session the piece belongs to and ``handle`` says where in the
    store the bytes are (both opaque to the core); the handle is recorded in the same metadata
    transaction as the received range the piece makes durable. ``tag`` is the writer's label for the
    piece (the block id of an Azure Put Block); pieces of a session never overlap.
    """

    ref: str
    start: int
    end: int
    handle: str = ""
    tag: str = ""

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class ObjectInfo:
    """A published object (file) in a namespace."""

    namespace: str
    key: str
    size: int
    modified_at: float
    version: int = 0


@dataclass(frozen=True)
class Listing:
    """Immediate children of a folder: files and sub-folder keys."""

    files: list[ObjectInfo]
    folders: list[str]
