"""Upload containers: create, look up (noticing expiry lazily), seal for Industry Data's validate, and
discard with everything in them.

A container is a tenant-scoped engine resource (:class:`~chunkd.services.blob_model.Container`); its blobs
are child resources, their bytes engine objects under ``{containerId}/`` of the ``blob`` namespace, and its
staged blocks core sessions (:mod:`chunkd.services.blob_blocks`). Times come from the engine's clock.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import anyio

from chunkd.core import errors
from chunkd.core.engine import Engine
from chunkd.core.principal import Principal
from chunkd.services.blob_blocks import BlockService
from chunkd.services.blob_model import (
    K_BLOB,
    K_CONTAINER,
    NAMESPACE,
    Blob,
    Container,
    ContainerState,
    container_not_found,
    finalised,
    new_etag,
)

# How long a write that committed while validate was sealing the container waits for validate to record
# its set. Wall time on purpose (time.monotonic): it bounds a wait, it is no domain time.
SEAL_WAIT = 10.0


class ContainerService:
    """Containers over one engine; ``blocks`` drops their staged blocks when they are discarded."""

    def __init__(self, engine: Engine, blocks: BlockService) -> None:
        self.engine = engine
        self.blocks = blocks

    async def create(self, principal: Principal, owner: str, session_ttl: float, container_ttl: float) -> Container:
        """A new open container of ``owner`` (e.g. a data connector id) in ``principal``'s tenant: writable for
        ``session_ttl`` seconds (its SAS's lifetime), kept for ``container_ttl``."""
        now = float(int(self.engine.clock()))  # whole seconds: the SAS's se has no fraction
        container = Container(id=str(uuid.uuid4()), owner=owner, state=ContainerState.OPEN,
                              session_expires=now + session_ttl, container_expires=now + container_ttl,
                              etag=new_etag())
        res = container.to_resource()
        return Container.from_resource(await self.engine.create_resource(K_CONTAINER, res.id, principal, res.data,
                                                                         parent=owner))

    async def _read(self, cid: str) -> Container | None:
        res = await self.engine.get_resource(K_CONTAINER, cid)
        return Container.from_resource(res) if res is not None else None

    async def get(self, cid: str) -> Container | None:
        """The container if it exists, is not discarded and has not expired (an expired one is discarded
        now: expiry is noticed when a request touches the container)."""
        container = await self._read(cid)
        if container is None or container.state is ContainerState.DISCARDED:
            return None
        if container.container_expires < self.engine.clock():
            await self.discard(cid)
            return None
        return container

    async def require(self, cid: str, *, writable: bool) -> Container:
        """The live container; BlobFault ContainerNotFound, or AuthorizationFailure when ``writable`` is
        asked of a container sealed by validate."""
        container = await self.get(cid)
        if container is None:
            raise container_not_found()
        if writable and not container.is_open:
            raise finalised()
        return container

    async def of_owner(self, owner: str) -> list[Container]:
        return [Container.from_resource(r) for r in await self.engine.list_resources(K_CONTAINER, parent=owner)]

    async def sweep_owner(self, owner: str) -> int:
        """Discard the expired containers of one owner; how many."""
        count = 0
        for container in await self.of_owner(owner):
            if container.state is not ContainerState.DISCARDED and container.container_expires < self.engine.clock():
                await self.discard(container.id)
                count += 1
        return count

    async def _change(self, cid: str, state: ContainerState | None = None,
                      validated: dict[str, str] | None = None) -> Container | None:
        """Compare-and-set the state and/or the validated set (retrying on races); None when it is gone."""
        for _ in range(20):
            current = await self._read(cid)
            if current is None:
                return None
            changed = replace(current, state=state or current.state,
                              validated=validated if validated is not None else current.validated)
            try:
                res = await self.engine.update_resource(current.to_resource(), changed.to_resource().data)
                return Container.from_resource(res)
            except errors.Conflict:
                await anyio.sleep(0.01)
        raise errors.Conflict("the container is changing too fast")

    async def discard(self, cid: str) -> None:
        """Mark the container discarded and delete its blobs, staged blocks and bytes. Idempotent; old SAS
        URLs then meet ContainerNotFound."""
        await self._change(cid, ContainerState.DISCARDED)
        await self.blocks.drop_all(cid)
        for blob in await self.blobs(cid):
            await self.engine.delete_resource(K_BLOB, blob.id)
        await self.engine.delete_object(NAMESPACE, cid)
        await self.engine.delete_resource(K_CONTAINER, cid)

    async def blobs(self, cid: str) -> list[Blob]:
        """Every committed blob of the container, sorted by name (UTF-8 byte order, as Azure sorts); fine
        for upload containers of a few thousand blobs."""
        out: list[Blob] = []
        after = ""
        while True:
            page = await self.engine.list_resources(K_BLOB, parent=cid, after=after, limit=1000)
            out += [Blob.from_resource(r) for r in page]
            if len(page) < 1000:
                return sorted(out, key=lambda b: b.name.encode("utf-8", "replace"))
            after = page[-1].id

    async def seal(self, cid: str) -> list[Blob]:
        """Finalise the container for validate: no write is accepted from now on, and the blobs returned
        (recorded as the validated set, name -> etag) are exactly the ones writers keep (see
        :meth:`check_writable`). Raises BlobFault ContainerNotFound when it is gone."""
        if await self._change(cid, ContainerState.VALIDATED) is None:
            raise container_not_found()
        blobs = await self.blobs(cid)
        if await self._change(cid, validated={b.name: b.etag for b in blobs}) is None:
            raise container_not_found()
        return blobs

    async def check_writable(self, cid: str, installed: Blob | None = None) -> None:
        """Raise unless the container accepts writes: ContainerNotFound when it is gone or discarded,
        AuthorizationFailure once validated.

        With ``installed`` (a blob version just installed) a validated container keeps it exactly when
        validate's recorded set has this version -- validate lists the container after sealing it, and a
        write that committed before that listing is part of it. Waits up to :data:`SEAL_WAIT` for validate
        to record its set.
        """
        current = await self._read(cid)
        deadline = time.monotonic() + SEAL_WAIT
        while True:
            if current is None or current.state is ContainerState.DISCARDED:
                raise container_not_found()
            if current.is_open:
                return
            if installed is None:
                raise finalised()
            if current.validated is not None:
                if current.validated.get(installed.name) == installed.etag:
                    return
                raise finalised()
            if time.monotonic() > deadline:
                raise finalised()
            await anyio.sleep(0.02)
            current = await self._read(cid)
