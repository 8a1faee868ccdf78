"""The upload-session engine: every rule about sessions, ranges, commits and expiry lives here.

Front ends and domain services call these methods in domain terms; the engine talks to a
:class:`~chunkd.core.store.SessionStore` (metadata), a :class:`~chunkd.core.resources.ResourceStore` and
a :class:`~chunkd.core.bytestore.ByteStore` (bytes) -- ports defined in the core and implemented by
backends the core never imports -- and never sees HTTP. A method that returns normally for a write has
made the bytes durable (when ``durable`` is on) and recorded them.

The engine is split by concept: :mod:`.sessions` (open, read, list), :mod:`.writes` (the write path),
:mod:`.commits` (commit, compose, delete), :mod:`.objects` (published objects), :mod:`.expiry`
(the sweep); :mod:`.claims` holds the claim and take-over policy every write follows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chunkd.core._base import EngineBase, EngineConfig, Metadata
from chunkd.core.commits import CommitOps
from chunkd.core.expiry import ExpiryOps
from chunkd.core.objects import ObjectOps
from chunkd.core.principal import Principal
from chunkd.core.resources import Resource
from chunkd.core.sessions import SessionOps
from chunkd.core.writes import WriteOps, WriteResult

__all__ = ["Engine", "EngineConfig", "Metadata", "WriteResult"]


class Engine(SessionOps, WriteOps, CommitOps, ObjectOps, ExpiryOps, EngineBase):
    """Sessions and objects over one metadata store and one byte store."""

    # -- resources (protocol objects the core stores but does not interpret) -----------------------
    async def create_resource(self, kind: str, resource_id: str, principal: Principal, data: dict[str, Any],
                              *, parent: str = "") -> Resource:
        now = self.clock()
        return await self.store.put_resource(Resource(kind=kind, id=resource_id, tenant=principal.tenant,
                                                      owner=principal.key, data=data, created_at=now,
                                                      modified_at=now, parent=parent))

    async def get_resource(self, kind: str, resource_id: str) -> Resource | None:
        return await self.store.get_resource(kind, resource_id)

    async def update_resource(self, resource: Resource, data: dict[str, Any]) -> Resource:
        """Compare-and-set against ``resource.version``; raises Conflict if it changed meanwhile."""
        return await self.store.update_resource(resource.kind, resource.id, resource.version, data, self.clock())

    async def list_resources(self, kind: str, *, tenant: str | None = None, parent: str | None = None,
                             owner: str | None = None, limit: int = 1000, after: str = "") -> list[Resource]:
        return await self.store.list_resources(kind, tenant=tenant, parent=parent, owner=owner, limit=limit,
                                               after=after)

    async def delete_resource(self, kind: str, resource_id: str) -> bool:
        return await self.store.delete_resource(kind, resource_id)

    async def delete_resources(self, kind: str, resource_ids: Sequence[str]) -> int:
        return await self.store.delete_resources(kind, resource_ids)
