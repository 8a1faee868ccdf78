"""Published objects: whole-object writes, reads, listings, deletes and copies.

Folder operations need the byte store's :class:`~chunkd.core.bytestore.Folders` capability; a copy runs
inside the store where it has :class:`~chunkd.core.bytestore.ServerSideCopy`, otherwise the bytes pass
through this process (read, then written as a new piece).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio

from chunkd.core._base import EngineBase
from chunkd.core.body import Body
from chunkd.core.bytestore import Folders, ServerSideCopy, StorageUsage, UsageReport
from chunkd.core.errors import InvalidPath, ObjectNotFound, TooLarge
from chunkd.core.models import Listing, ObjectInfo


class ObjectOps(EngineBase):
    async def put_object(self, namespace: str, key: str, body: Body) -> ObjectInfo:
        """Store a whole object from a body, durably, replacing any existing one atomically."""
        ref = self.storage.new_ref("put")
        writer = await self.storage.open_piece(ref, 0, durable=self.config.durable)
        try:
            size = 0
            async for data in body:
                size += len(data)
                if size > self.config.max_size:
                    raise TooLarge()
                await writer.write(data)
            piece = await writer.finish(self.config.durable)
            return await self.storage.assemble([piece], namespace, key)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await writer.abort()
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await self.storage.discard(ref)

    async def stat_object(self, namespace: str, key: str) -> ObjectInfo:
        info = await self.storage.stat(namespace, key)
        if info is None:
            raise ObjectNotFound()
        return info

    def read_object(self, namespace: str, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        return self.storage.read(namespace, key, start, end)

    def _folders(self) -> Folders:
        if not isinstance(self.storage, Folders):
            raise ObjectNotFound(f"the {self.storage.name} byte store has no folders")
        return self.storage

    async def list_folder(self, namespace: str, prefix: str) -> Listing:
        return await self._folders().list_folder(namespace, prefix)

    async def is_folder(self, namespace: str, key: str) -> bool:
        return isinstance(self.storage, Folders) and await self.storage.is_folder(namespace, key)

    async def walk(self, namespace: str, prefix: str) -> list[ObjectInfo]:
        if not isinstance(self.storage, Folders):
            info = await self.storage.stat(namespace, prefix) if prefix else None
            return [info] if info is not None else []
        return await self.storage.walk(namespace, prefix)

    async def delete_object(self, namespace: str, key: str) -> bool:
        """Delete an object, or a folder recursively. False when nothing was there."""
        if await self.is_folder(namespace, key):
            return await self._folders().delete_folder(namespace, key)
        return await self.storage.delete(namespace, key)

    async def copy_object(self, namespace: str, src: str, dst: str, skip: frozenset[str] = frozenset()) -> int:
        """Copy an object or a folder (recursively, skipping file names in ``skip``) to ``dst``,
        replacing what is there; returns how many objects were copied."""
        if await self.is_folder(namespace, src):
            if dst == src or dst.startswith(src + "/") or not src:
                raise InvalidPath("a folder cannot be copied into itself")
            found = [(info.key, dst + info.key[len(src):]) for info in await self.walk(namespace, src)
                     if info.key.rsplit("/", 1)[-1] not in skip]
        elif await self.storage.stat(namespace, src) is not None:
            found = [(src, dst)]
        else:
            raise ObjectNotFound(f"{src} does not exist")
        for a, b in found:
            await self._copy_one(namespace, a, b)
        return len(found)

    async def _copy_one(self, namespace: str, src: str, dst: str) -> None:
        try:
            if isinstance(self.storage, ServerSideCopy):
                await self.storage.copy(namespace, src, dst)
                return
            info = await self.stat_object(namespace, src)
            await self.put_object(namespace, dst, self.storage.read(namespace, src, 0, info.size))
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"{src} does not exist") from exc

    async def usage(self) -> StorageUsage | None:
        """Capacity figures, when the store reports them."""
        return await self.storage.usage() if isinstance(self.storage, UsageReport) else None
