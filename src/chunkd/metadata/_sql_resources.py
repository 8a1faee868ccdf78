"""Resources in the SQL store (:class:`chunkd.core.resources.ResourceStore`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from chunkd.core.errors import AlreadyExists, Conflict, NotFound
from chunkd.core.resources import Resource
from chunkd.metadata._sql_base import SqlBase
from chunkd.metadata._sql_rows import resource_from, resource_from_tuple
from chunkd.metadata.schema import resources


class SqlResources(SqlBase):
    async def put_resource(self, resource: Resource) -> Resource:
        def run() -> Resource:
            h = self._hot
            with self._fast_write() as t:
                if t.one(h.resource_exists, rkind=resource.kind, rid=resource.id):
                    raise AlreadyExists(f"{resource.kind} {resource.id} already exists")
                t.run(h.add_resource, kind=resource.kind, id=resource.id, tenant=resource.tenant,
                      owner=resource.owner, parent=resource.parent, data=json.dumps(resource.data),
                      created_at=resource.created_at, modified_at=resource.modified_at, version=resource.version)
            return resource

        try:
            return await self._run(run)
        except self._integrity_errors as exc:  # a concurrent insert of the same (kind, id) on PostgreSQL
            raise AlreadyExists(f"{resource.kind} {resource.id} already exists") from exc

    async def get_resource(self, kind: str, resource_id: str) -> Resource | None:
        def run() -> Resource | None:
            with self._fast_read(single=True) as t:
                row = t.one(self._hot.get_resource, rkind=kind, rid=resource_id)
            return resource_from_tuple(row) if row else None

        return await self._run(run)

    async def update_resource(self, kind: str, resource_id: str, expected_version: int,
                              data: dict[str, Any], now: float) -> Resource:
        def run() -> Resource:
            with self._write() as conn:
                res = conn.execute(resources.update().where(
                    resources.c.kind == kind, resources.c.id == resource_id,
                    resources.c.version == expected_version).values(
                    data=json.dumps(data), modified_at=now, version=resources.c.version + 1))
                row = conn.execute(sa.select(resources).where(resources.c.kind == kind,
                                                              resources.c.id == resource_id)).first()
                if row is None:
                    raise NotFound(f"{kind} {resource_id} does not exist")
                if not res.rowcount:
                    raise Conflict(f"{kind} {resource_id} changed concurrently")
                return resource_from(row._mapping)

        return await self._run(run)

    async def list_resources(self, kind: str, *, tenant: str | None = None, parent: str | None = None,
                             owner: str | None = None, limit: int = 1000, after: str = "") -> list[Resource]:
        def run() -> list[Resource]:
            q = sa.select(resources).where(resources.c.kind == kind, resources.c.id > after)
            if tenant is not None:
                q = q.where(resources.c.tenant == tenant)
            if parent is not None:
                q = q.where(resources.c.parent == parent)
            if owner is not None:
                q = q.where(resources.c.owner == owner)
            with self._read() as conn:
                return [resource_from(r._mapping) for r in conn.execute(q.order_by(resources.c.id).limit(limit))]

        return await self._run(run)

    async def delete_resources(self, kind: str, resource_ids: Sequence[str]) -> int:
        ids = list(resource_ids)

        def run() -> int:
            deleted = 0
            with self._write() as conn:
                for i in range(0, len(ids), 500):  # bounded IN lists
                    res = conn.execute(resources.delete().where(resources.c.kind == kind,
                                                                resources.c.id.in_(ids[i:i + 500])))
                    deleted += res.rowcount
            return deleted

        return await self._run(run) if ids else 0

    async def delete_resource(self, kind: str, resource_id: str) -> bool:
        def run() -> bool:
            with self._write() as conn:
                res = conn.execute(resources.delete().where(resources.c.kind == kind,
                                                            resources.c.id == resource_id))
                return bool(res.rowcount)

        return await self._run(run)
