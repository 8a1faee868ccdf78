"""Committed blobs: Put Blob, Put Block List, Set Blob Metadata / Properties, Delete Blob and reads.

Each blob version is the engine object ``blob/{containerId}/{random}`` (never the blob name, so any name
works and an overwrite never exposes a half-written blob). A write stores the new object first, then points
the blob's record at it with a compare-and-set (:meth:`BlobService._install`) and deletes the object it
replaced; a write that loses against validate or a reset of the container is undone, so racing writers are
all-or-nothing per blob.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace

import anyio

from chunkd.core import errors
from chunkd.core.body import Body
from chunkd.core.engine import Engine
from chunkd.services.blob_blocks import BlockService
from chunkd.services.blob_containers import ContainerService
from chunkd.services.blob_model import (
    K_BLOB,
    NAMESPACE,
    Blob,
    BlobFault,
    BlobProps,
    Conditions,
    Container,
    blob_id,
    blob_not_found,
    blob_principal,
    new_etag,
)

_RETRIES = 50  # compare-and-set rounds before a write gives up with Conflict (the blob changes too fast)


class BlobService:
    """Blobs of the containers of ``containers``; ``blocks`` holds their staged blocks."""

    def __init__(self, engine: Engine, containers: ContainerService, blocks: BlockService) -> None:
        self.engine = engine
        self.containers = containers
        self.blocks = blocks

    async def get(self, cid: str, name: str) -> Blob | None:
        res = await self.engine.get_resource(K_BLOB, blob_id(cid, name))
        return Blob.from_resource(res) if res is not None else None

    def read(self, blob: Blob, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``[start, end)`` of this version of the blob."""
        return self.engine.read_object(NAMESPACE, blob.object, start, end)

    async def put(self, container: Container, name: str, body: Body, props: BlobProps, cond: Conditions,
                  digest: Callable[[], str] | None = None) -> Blob:
        """Put Blob: the whole blob from ``body``, which the caller has wrapped to check its length and
        digests. ``digest`` gives the body's base64 MD5 once it has been read (stored unless ``props`` has
        one). Discards the blob's staged blocks, as Azure does. Raises BlobFault (conditions, container
        state); durable when it returns."""
        cond.check_write(await self.get(container.id, name))
        key = f"{container.id}/{uuid.uuid4().hex}"
        info = await self.engine.put_object(NAMESPACE, key, body)
        if digest is not None and not props.md5:
            props = replace(props, md5=digest())
        blob = await self._install(container, name, key, info.size, props, (), cond)
        await self.blocks.drop(container.id, name)
        return blob

    async def commit_block_list(self, container: Container, name: str, wanted: Sequence[tuple[str, str]],
                                props: BlobProps, cond: Conditions) -> Blob:
        """Put Block List: ``wanted`` is ``[(Latest|Committed|Uncommitted, blockId)]`` in blob order (see
        :meth:`BlockService.publish`). Raises BlobFault InvalidBlockList, or as :meth:`put`."""
        existing = await self.get(container.id, name)
        cond.check_write(existing)
        published = await self.blocks.publish(container.id, name, existing, wanted)
        blob = await self._install(container, name, published.key, published.size, props, published.blocks, cond)
        if published.blocks:
            await self.blocks.keep_id_length(container.id, name, len(published.blocks[0][0]))
        return blob

    async def _install(self, container: Container, name: str, key: str, size: int, props: BlobProps,
                       blocks: tuple[tuple[str, int], ...], cond: Conditions) -> Blob:
        """Point the blob at a newly published object (compare-and-set), then drop what it replaced.

        The container must be open just before the switch, and still open (or finalised only after the
        switch) just after it; otherwise the switch is undone -- the previous version comes back -- and the
        write is refused, so a reset or validate never races with a write into keeping half of it. The new
        object is deleted whenever the write is refused.
        """
        now = self.engine.clock()
        fresh = Blob(container=container.id, name=name, object=key, size=size, etag=new_etag(), created=now,
                     modified=now, props=props, blocks=blocks)
        try:
            for _ in range(_RETRIES):
                existing = await self.get(container.id, name)
                cond.check_write(existing)
                await self.containers.check_writable(container.id)
                try:
                    if existing is None:
                        res = await self.engine.create_resource(K_BLOB, fresh.id, blob_principal(container),
                                                                fresh.to_resource().data, parent=container.id)
                    else:
                        res = await self.engine.update_resource(
                            existing.to_resource(), replace(fresh, created=existing.created).to_resource().data)
                except (errors.AlreadyExists, errors.Conflict):
                    await anyio.sleep(0.005)
                    continue
                break
            else:
                raise errors.Conflict("the blob is changing too fast")
            installed = Blob.from_resource(res)
            try:
                await self.containers.check_writable(container.id, installed)
            except BlobFault:
                with anyio.CancelScope(shield=True):
                    await self._undo(installed, existing)
                raise
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.engine.delete_object(NAMESPACE, key)
            raise
        if existing is not None:
            await self.engine.delete_object(NAMESPACE, existing.object)
        return installed

    async def set_properties(self, container: Container, name: str, change: Callable[[BlobProps], BlobProps],
                             cond: Conditions) -> Blob:
        """Set Blob Metadata / Properties: the blob's properties become ``change(props)`` with a new ETag,
        same bytes (compare-and-set; checked against reset and validate like any write, see ``_install``).
        Raises BlobFault BlobNotFound for a blob with only staged blocks, or as :meth:`put`."""
        for _ in range(_RETRIES):
            existing = await self.get(container.id, name)
            if existing is None:
                raise blob_not_found()
            cond.check_write(existing)
            await self.containers.check_writable(container.id)
            changed = replace(existing, props=change(existing.props), etag=new_etag(), modified=self.engine.clock())
            try:
                res = await self.engine.update_resource(existing.to_resource(), changed.to_resource().data)
                break
            except (errors.Conflict, errors.NotFound):
                await anyio.sleep(0.005)
        else:
            raise errors.Conflict("the blob is changing too fast")
        installed = Blob.from_resource(res)
        try:
            await self.containers.check_writable(container.id, installed)
        except BlobFault:
            with anyio.CancelScope(shield=True):
                await self._undo(installed, existing)
            raise
        return installed

    async def _undo(self, installed: Blob, previous: Blob | None) -> None:
        try:
            if previous is None:
                await self.engine.delete_resource(K_BLOB, installed.id)
            else:
                await self.engine.update_resource(installed.to_resource(), previous.to_resource().data)
        except (errors.Conflict, errors.NotFound):
            pass  # someone else changed it meanwhile; theirs stands

    async def delete(self, container: Container, name: str, cond: Conditions) -> None:
        """Delete Blob: the committed blob and its staged blocks. Raises BlobFault BlobNotFound when it has
        neither, or when ``cond`` does not hold. Idempotent for the bytes."""
        blob = await self.get(container.id, name)
        if blob is None and not await self.blocks.staged(container.id, name):
            raise blob_not_found()
        if cond.any:
            cond.check_write(blob)
        await self.blocks.drop(container.id, name)
        if blob is not None:
            await self.engine.delete_resource(K_BLOB, blob.id)
            await self.engine.delete_object(NAMESPACE, blob.object)


@dataclass(frozen=True)
class BlobServices:
    """The container, blob and block services of one engine, wired to each other."""

    containers: ContainerService
    blobs: BlobService
    blocks: BlockService

    @classmethod
    def over(cls, engine: Engine) -> BlobServices:
        blocks = BlockService(engine)
        containers = ContainerService(engine, blocks)
        return cls(containers, BlobService(engine, containers, blocks), blocks)
