"""Protocol resources: the small documents front ends and domain services keep beside byte sessions
(printers, print jobs, data connectors, blob containers and blobs, ...), and the port that stores them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Resource", "ResourceStore"]


@dataclass(frozen=True)
class Resource:
    """A protocol-level object that is not a byte session. ``data`` is a JSON document the core stores
    without interpreting (domain services turn it into typed records); ``parent`` links children to
    parents (a job to its printer). ``version`` increases on every update (compare-and-set)."""

    kind: str
    id: str
    tenant: str
    owner: str
    data: dict[str, Any]
    created_at: float
    modified_at: float
    parent: str = ""
    version: int = 0


class ResourceStore(Protocol):
    """Persistent resources, keyed by ``(kind, id)``. Every method is one transaction and safe to call
    concurrently from many processes."""

    async def put_resource(self, resource: Resource) -> Resource:
        """Insert a resource. Raises AlreadyExists if ``(kind, id)`` exists, also when another process
        inserts it concurrently."""

    async def get_resource(self, kind: str, resource_id: str) -> Resource | None:
        """The resource, or None."""

    async def update_resource(self, kind: str, resource_id: str, expected_version: int,
                              data: dict[str, Any], now: float) -> Resource:
        """Compare-and-set the document; bumps the version and ``modified_at``. Raises Conflict when the
        version moved, NotFound when the resource is gone. Nothing changes when it raises."""

    async def list_resources(self, kind: str, *, tenant: str | None = None, parent: str | None = None,
                             owner: str | None = None, limit: int = 1000, after: str = "") -> list[Resource]:
        """Resources of a kind ordered by id, filtered, starting after ``after`` (keyset pagination)."""

    async def delete_resource(self, kind: str, resource_id: str) -> bool:
        """Delete; False when it did not exist. Idempotent."""

    async def delete_resources(self, kind: str, resource_ids: Sequence[str]) -> int:
        """Delete several in one transaction; how many existed."""
