"""Names, object info and folders of :class:`chunkd.storage.azure.AzureStore` (see its module docstring):
published objects are the blobs ``PREFIX objects/<namespace>/<key>``, folders are their name prefixes,
and the target checks that give PathConflict semantics on a flat name space live here too."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Coroutine, Sequence
from typing import TypeVar

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.blob import BlobProperties

from chunkd.core.errors import InvalidPath, ObjectNotFound, PathConflict
from chunkd.core.models import Listing, ObjectInfo
from chunkd.storage._azure_client import AzureConnection, AzureTarget
from chunkd.storage._azure_errors import from_sdk

__all__ = ["PARALLEL", "AzureFolders", "bounded", "listed", "sdk"]

log = logging.getLogger("chunkd.storage.azure")
PARALLEL = 8
T = TypeVar("T")


async def sdk(call: Awaitable[T]) -> T:
    try:
        return await call
    except AzureError as exc:
        raise from_sdk(exc) from exc


class AzureFolders:
    """Object names, stat and the Folders capability on a container."""

    def __init__(self, target: AzureTarget) -> None:
        self.conn = AzureConnection(target)
        self.prefix = target.prefix
        self._container_ready = False

    async def _ready(self) -> None:
        """Create the container on first use (a deployment may also create it beforehand)."""
        if self._container_ready:
            return
        try:
            await self.conn.client.create_container()
        except ResourceExistsError:
            pass
        except AzureError as exc:  # a SAS scoped to the container cannot create it: the writes will tell
            log.debug("could not create container %s: %s", self.conn.target.container, exc)
        self._container_ready = True

    def _object(self, namespace: str, key: str) -> str:
        for part in (namespace, key):
            if part and (part.startswith("/") or "\\" in part or any(ord(c) < 32 for c in part)
                         or any(s in ("", ".", "..") for s in part.split("/"))):
                raise InvalidPath(f"bad path {part!r}")
        if not namespace:
            raise InvalidPath("empty namespace")
        return f"{self.prefix}objects/{namespace}/{key}"

    def _info(self, namespace: str, key: str, props: BlobProperties) -> ObjectInfo:
        etag = (props.etag or "").strip('"')
        try:
            version = int(etag, 16) if etag.startswith("0x") else int(props.last_modified.timestamp() * 1e6)
        except ValueError:
            version = 0
        return ObjectInfo(namespace, key, int(props.size or 0), props.last_modified.timestamp(), version)

    # -- objects and folders ----------------------------------------------------------------------
    async def _check_target(self, namespace: str, key: str) -> None:
        name = self._object(namespace, key)
        parents = key.split("/")[:-1]
        checks: list[Awaitable[bool]] = [self._any_below(name + "/")]
        checks += [self._exists(self._object(namespace, "/".join(parents[:i + 1]))) for i in range(len(parents))]
        found = await asyncio.gather(*checks)
        if found[0]:
            raise PathConflict(f"{key} is a folder")
        if any(found[1:]):
            raise PathConflict("a file stands where a folder is needed")

    async def _exists(self, name: str) -> bool:
        try:
            await sdk(self.conn.client.get_blob_client(name).get_blob_properties())
        except ObjectNotFound:
            return False
        return True

    async def _any_below(self, base: str) -> bool:
        await self._ready()
        async for _ in listed(self.conn.client.list_blobs(name_starts_with=base, results_per_page=1)):
            return True
        return False

    # -- objects ----------------------------------------------------------------------------------
    async def stat(self, namespace: str, key: str) -> ObjectInfo | None:
        name = self._object(namespace, key)
        await self._ready()
        if not key:
            return None
        try:
            props = await sdk(self.conn.client.get_blob_client(name).get_blob_properties())
        except ObjectNotFound:
            return None
        return self._info(namespace, key, props)

    async def delete(self, namespace: str, key: str) -> bool:
        name = self._object(namespace, key)
        await self._ready()
        if not key:
            return False
        try:
            await sdk(self.conn.client.get_blob_client(name).delete_blob())
        except ObjectNotFound:
            return False
        return True

    async def list_folder(self, namespace: str, prefix: str) -> Listing:
        base = self._object(namespace, prefix) + ("/" if prefix else "")
        root = self._object(namespace, "")
        await self._ready()
        files: list[ObjectInfo] = []
        folders: list[str] = []
        async for item in listed(self.conn.client.walk_blobs(name_starts_with=base, delimiter="/")):
            rel = item.name[len(root):]
            if isinstance(item, BlobProperties):
                files.append(self._info(namespace, rel, item))
            else:
                folders.append(rel.rstrip("/"))
        return Listing(sorted(files, key=lambda i: i.key), sorted(folders))

    async def walk(self, namespace: str, prefix: str) -> list[ObjectInfo]:
        one = await self.stat(namespace, prefix) if prefix else None
        if one is not None:
            return [one]
        base = self._object(namespace, prefix) + ("/" if prefix else "")
        root = self._object(namespace, "")
        await self._ready()
        found = [self._info(namespace, b.name[len(root):], b)
                 async for b in listed(self.conn.client.list_blobs(name_starts_with=base))]
        return sorted(found, key=lambda i: i.key)

    async def is_folder(self, namespace: str, key: str) -> bool:
        return await self._any_below(self._object(namespace, key) + ("/" if key else ""))

    async def delete_folder(self, namespace: str, prefix: str) -> bool:
        # the folder's contents, not a file of the folder's name
        doomed = [o for o in await self.walk(namespace, prefix) if o.key != prefix]
        done = await bounded([self.delete(namespace, o.key) for o in doomed])
        return any(done)

async def bounded(calls: Sequence[Awaitable[T]]) -> list[T]:
    """Await ``calls``, at most PARALLEL at a time; results in order. The first failure cancels the rest."""
    gate = asyncio.Semaphore(PARALLEL)

    async def one(call: Awaitable[T]) -> T:
        try:
            async with gate:
                return await call
        finally:
            if isinstance(call, Coroutine):
                call.close()  # one cancelled before it started must not warn "never awaited"

    tasks = [asyncio.ensure_future(one(c)) for c in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def listed(paged: AsyncIterator[T]) -> AsyncIterator[T]:
    """A listing of the SDK, its failures mapped."""
    try:
        async for item in paged:
            yield item
    except AzureError as exc:
        raise from_sdk(exc) from exc
