"""Value objects of the core: sessions and published objects."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["Listing", "ObjectInfo", "Resource", "Session", "SessionState"]


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
    ``storage_ref`` is the byte store's opaque handle for the staged bytes; ``extra`` carries
    protocol-specific fields the core stores but does not interpret.
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
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.length is not None and self.received >= self.length

    def evolve(self, **changes: Any) -> Session:
        return replace(self, **changes)


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


@dataclass(frozen=True)
class Resource:
    """A protocol-level object that is not a byte session: a printer, a print job, a data connector,
    a blob container, a validation operation... ``data`` is the front end's JSON document; the core only
    stores it. ``parent`` links children to parents (a job to its printer)."""

    kind: str
    id: str
    tenant: str
    owner: str
    data: dict[str, Any]
    created_at: float
    modified_at: float
    parent: str = ""
    version: int = 0
