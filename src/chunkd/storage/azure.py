"""Byte storage in one Azure Blob Storage container (``--storage 'azure://ACCOUNT/CONTAINER[/PREFIX]
?endpoint=URL'``, key from ``AZURE_STORAGE_KEY`` or ``AZURE_STORAGE_CONNECTION_STRING``; ``pip install
'chunkd[azure]'``). Several chunkd nodes may share the container: everything they need is in it or in
the metadata store. Container layout (every name starts with ``PREFIX``)::

    objects/<namespace>/<key>        published objects, plain block blobs readable by any Azure tool
    staging/<ref>/<segment, 8 hex>   one blob per session and 256 MiB of its offsets ("segment"); its
                                     pieces are *uncommitted blocks* until the session is published

**Pieces** (:mod:`chunkd.storage._azure_blocks`): a piece is one Put Block per 4 MiB (a 64 KiB tus PATCH
is exactly one request, and earlier bytes are never sent again), into its session's own staging blob.
Azure answers Put Block only once the block is stored durably, so no acknowledged byte lives on one
node. Writers of one session work in parallel (blocks are independent until committed).

**Commit** (:meth:`AzureStore.assemble`), no byte through chunkd: 1. *seal*: one Put Block List per
staging blob commits exactly the blocks the recorded pieces need, in offset order; this also coalesces
any number of small pieces (a 256 MiB segment holds 4,096 64-KiB pieces, far under the 50,000
committed-block limit) into one blob. 2. *publish*: a session of one segment (≤ 256 MiB) is one Copy
Blob From URL (synchronous) of the sealed blob onto the object's name; anything else (bigger sessions,
Blob Put Block List in any order, tus concatenation) is one Put Block From URL per run of consecutive
bytes (≤ 256 MiB each) plus one Put Block List on the object. A 1 GiB upload in 64 KiB PATCHes commits
with 4 + 4 + 1 requests, not 16,385. Measured on Azurite (bench/README.md, "Azure Blob piece layout"):
1,024 pieces commit with 5 requests and 60 ms of CPU here; a blob per piece would need 1,025 calls and ≥
2 s of CPU. Put Block and Get Blob go out through aiohttp under a self-signed SAS (0.33 ms CPU per 64
KiB piece against 1.2-2.2 ms through azure-storage-blob; "Azure Blob client libraries").

**Why per-session staging blobs and not the object's own blob or one blob per piece.** Staging the
blocks on the object's name would let a second session committing to the same name (its Put Block
List) silently drop the first one's uncommitted, acknowledged blocks. One blob per piece would make a
commit cost one Put Block From URL per piece, and needs coalescing passes beyond 50,000 pieces
(bench/README.md has the numbers). Here two sessions racing to one name each seal their own blobs;
the one whose final Put Block List loses the race (InvalidBlockList: the other's Copy or Put Block
List dropped its uncommitted blocks on the object) simply publishes again from its sealed blobs.

**Idempotent** after a crash: a sealed blob whose committed list is already the wanted one is left as
it is; publishing is repeated from the sealed blobs, which stay until :meth:`discard`.

**Limits.** Azure collects uncommitted blocks a week after the last Put Block on their blob: a session
idle that long loses its staged bytes (PiecesMissing at commit); keep session lifetimes below 7 days.
Per segment at most 50,000 pieces (a mean piece of ≥ 5.3 KiB), objects up to 50,000 x 256 MiB.

**Folders** are name prefixes. Publishing onto ``k`` raises PathConflict when a blob exists below
``k/`` or at one of ``k``'s parents (one listing and one HEAD per parent, checked before anything is
committed; two racing publishers can still create both -- an object store cannot lock a name space).
``delete_folder`` deletes blob by blob: a reader may see the folder half-deleted.

**Garbage**: staging refs whose newest blob is older than ``orphan_age`` and that the metadata store
says are dead are discarded. A publish that crashed between Put Block From URL and Put Block List
leaves uncommitted blocks on the object's name: the next commit to that name drops them, or Azure
after a week (they are invisible to readers and listings).

**Emulators.** Azurite 3.35 has no Put Block From URL (APINotImplemented): the first time it says so,
multi-run publishes fall back to copying those runs through this process (Get Blob + Put Block), with
a warning in the log.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

from azure.core.exceptions import AzureError
from azure.storage.blob import BlobBlock

from chunkd.core.errors import Conflict, ObjectNotFound, PiecesMissing
from chunkd.core.models import ObjectInfo, Piece
from chunkd.storage._azure_blocks import AzurePieceWriter, Plan, Span, plan, segments_of, staging_name
from chunkd.storage._azure_client import AzureTarget, parse_target
from chunkd.storage._azure_errors import AzureStoreError, from_sdk, not_implemented
from chunkd.storage._azure_objects import AzureFolders, bounded, listed, sdk

__all__ = ["AzureStore", "from_url"]

log = logging.getLogger("chunkd.storage.azure")

SEGMENT_SIZE = 256 << 20
BLOCK_SIZE = 4 << 20
SERVER_BLOCK = 256 << 20  # bytes per Put Block From URL (Azure allows up to 4000 MiB)
ORPHAN_AGE = 600.0  # staging blobs this young may belong to a session whose first record is in flight
SCAN_INTERVAL = 300.0
PUBLISH_ATTEMPTS = 6
SYNC_COPY = 256 << 20  # the largest source Copy Blob From URL takes


def from_url(url: str, data_dir: Path) -> AzureStore:
    """The registry's factory (``chunkd.storage.BACKENDS["azure"]``)."""
    return AzureStore(parse_target(url))


class AzureStore(AzureFolders):
    """Pieces as staged blocks, objects as block blobs, in one container. See the module docstring."""

    name = "azure"
    copy_free_assembly = True

    def __init__(self, target: AzureTarget, *, segment_size: int = SEGMENT_SIZE, block_size: int = BLOCK_SIZE,
                 orphan_age: float = ORPHAN_AGE, scan_interval: float = SCAN_INTERVAL) -> None:
        super().__init__(target)
        self.segment_size, self.block_size = segment_size, block_size
        self.orphan_age, self.scan_interval = orphan_age, scan_interval
        self.server_copy: bool | None = None  # Put Block From URL works here; None: not tried yet
        self._next_scan = 0.0

    async def aclose(self) -> None:
        await self.conn.aclose()

    # -- pieces -----------------------------------------------------------------------------------
    def new_ref(self, hint: str) -> str:
        safe = "".join(c for c in hint if c.isalnum() or c in "-_")[:64]
        return f"{safe}-{secrets.token_hex(6)}"

    async def open_piece(self, ref: str, start: int, *, durable: bool) -> AzurePieceWriter:
        await self._ready()
        return AzurePieceWriter(self.conn, ref, start, self.segment_size, self.block_size)

    async def discard(self, ref: str) -> None:
        await self._ready()
        base = staging_name(self.prefix, ref, 0).rsplit("/", 1)[0] + "/"
        names = [b.name async for b in listed(self.conn.client.list_blobs(name_starts_with=base,
                                                                            include=["uncommittedblobs"]))]
        await bounded([self._drop(n) for n in names])

    async def _drop(self, name: str) -> None:
        """Delete a blob and its uncommitted blocks: an empty Put Block List first, since Azure keeps
        the uncommitted blocks of a never-committed blob (a week) and cannot delete them directly."""
        blob = self.conn.client.get_blob_client(name)
        try:
            await sdk(blob.commit_block_list([]))
            await sdk(blob.delete_blob())
        except ObjectNotFound:
            pass

    # -- assemble ---------------------------------------------------------------------------------
    async def assemble(self, pieces: Sequence[Piece], namespace: str, key: str) -> ObjectInfo:
        name = self._object(namespace, key)
        await self._ready()
        await self._check_target(namespace, key)
        staged = segments_of(self.prefix, pieces)
        lists = await bounded([self._block_list(n) for n in staged])
        committed = {n: c for n, (c, _) in zip(staged, lists, strict=True)}
        the_plan = plan(self.prefix, pieces, {n: blocks for n, (_, blocks) in zip(staged, lists, strict=True)})
        await bounded([self._seal(n, ids, committed[n]) for n, ids in the_plan.seals.items()])
        await self._publish(the_plan, name)
        info = await self.stat(namespace, key)
        if info is None:
            raise Conflict(f"{key} was deleted while it was being published")
        return info

    async def _block_list(self, name: str) -> tuple[list[str], dict[str, int]]:
        """Committed ids in order, and every block (committed or not) with its size."""
        try:
            committed, uncommitted = await sdk(self.conn.client.get_blob_client(name).get_block_list("all"))
        except ObjectNotFound:
            return [], {}
        blocks = {b.id: b.size for b in uncommitted}
        blocks.update({b.id: b.size for b in committed})
        return [b.id for b in committed], blocks

    async def _seal(self, name: str, ids: list[str], committed: list[str]) -> None:
        if committed == ids:
            return  # sealed by an earlier attempt of this commit
        try:
            await sdk(self.conn.client.get_blob_client(name).commit_block_list([BlobBlock(i) for i in ids]))
        except PiecesMissing as exc:
            raise PiecesMissing(f"staged blocks of {name} are gone: {exc}") from exc

    async def _publish(self, the_plan: Plan, name: str) -> None:
        dest = self.conn.client.get_blob_client(name)
        spans = the_plan.spans
        if not spans:
            await sdk(dest.commit_block_list([]))  # an empty object (and no stray blocks under its name)
            return
        if len(spans) == 1 and spans[0].offset == 0 and spans[0].length == the_plan.sizes[spans[0].blob]:
            await self._copy_blob(spans[0].blob, name, spans[0].length)
            return
        for attempt in range(PUBLISH_ATTEMPTS):
            nonce = secrets.token_hex(12)
            parts = _split(spans, SERVER_BLOCK if self.server_copy is not False else self.block_size)
            ids = [f"{i:08x}{nonce}" for i in range(len(parts))]
            try:
                await bounded([self._stage(name, bid, part) for bid, part in zip(ids, parts, strict=True)])
                await sdk(dest.commit_block_list([BlobBlock(i) for i in ids]))
                return
            except _Fallback:
                continue
            except PiecesMissing:
                # another publisher's Put Block List or Copy replaced the object and dropped our staged
                # blocks; our bytes are safe in the sealed blobs: publish again, after a random pause
                await asyncio.sleep(random.uniform(0.05, 0.2) * (attempt + 1))
        raise Conflict(f"{name} is being replaced by others too often to publish; retry")

    async def _stage(self, name: str, bid: str, part: Span) -> None:
        if self.server_copy is not False:
            source = self.conn.blob_url(part.blob)
            try:
                await self.conn.client.get_blob_client(name).stage_block_from_url(
                    bid, source, source_offset=part.offset, source_length=part.length)
                self.server_copy = True
                return
            except AzureError as exc:
                if not not_implemented(exc) or self.server_copy:
                    raise from_sdk(exc) from exc
                log.warning("this Blob service has no Put Block From URL: publishing copies bytes through chunkd")
                self.server_copy = False
                raise _Fallback() from exc
        data = b"".join([c async for c in self.conn.get_range(part.blob, part.offset, part.offset + part.length)])
        if len(data) != part.length:
            raise PiecesMissing(f"{part.blob} is shorter than its sealed blocks")
        await self.conn.put_block(name, bid, data)

    async def _copy_blob(self, source: str, name: str, size: int) -> None:
        """A server-side copy that readers see happen at once: Copy Blob From URL (synchronous, up to
        256 MiB -- a sealed segment always fits; on Azurite 50x faster than Copy Blob for a blob of many
        blocks), else Copy Blob, waiting while Azure reports it pending."""
        dest = self.conn.client.get_blob_client(name)
        result = await sdk(dest.start_copy_from_url(self.conn.blob_url(source), requires_sync=size <= SYNC_COPY))
        status, waited = result.get("copy_status"), 0.0
        while status == "pending":
            await asyncio.sleep(min(1.0, 0.05 + waited / 10))
            waited += 0.1
            status = (await sdk(dest.get_blob_properties())).copy.status
        if status not in ("success", None):
            raise AzureStoreError(f"copying {source} to {name} ended {status}")

    async def read(self, namespace: str, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        name = self._object(namespace, key)
        await self._ready()
        if end <= start or not key:
            if await self.stat(namespace, key) is None:
                raise FileNotFoundError(key)
            return
        try:
            async for chunk in self.conn.get_range(name, start, end):
                yield chunk
        except ObjectNotFound:
            raise FileNotFoundError(key) from None

    # -- capabilities -----------------------------------------------------------------------------
    async def copy(self, namespace: str, src: str, dst: str) -> ObjectInfo:
        source, name = self._object(namespace, src), self._object(namespace, dst)
        info = await self.stat(namespace, src)
        if info is None:
            raise FileNotFoundError(src)
        await self._check_target(namespace, dst)
        await self._copy_blob(source, name, info.size)
        info = await self.stat(namespace, dst)
        if info is None:
            raise Conflict(f"{dst} was deleted while it was being copied")
        return info

    async def collect_garbage(self, is_live: Callable[[str], Awaitable[bool]]) -> int:
        """Discard staging refs that are dead (``is_live``) and whose newest blob is older than
        ``orphan_age``. Lists the staging area at most every ``scan_interval`` seconds."""
        now = time.time()
        if now < self._next_scan:
            return 0
        await self._ready()
        self._next_scan = now + self.scan_interval
        newest: dict[str, float] = {}
        base = f"{self.prefix}staging/"
        async for b in listed(self.conn.client.list_blobs(name_starts_with=base, include=["uncommittedblobs"])):
            ref = b.name[len(base):].split("/", 1)[0]
            seen = b.last_modified.timestamp() if b.last_modified else now  # unknown: treat as young
            newest[ref] = max(newest.get(ref, 0.0), seen)
        removed = 0
        for ref, seen in newest.items():
            if now - seen > self.orphan_age and not await is_live(ref):
                await self.discard(ref)
                removed += 1
        return removed


class _Fallback(Exception):
    """Put Block From URL turned out to be missing: plan the publish again with small blocks."""


def _split(spans: list[Span], limit: int) -> list[Span]:
    parts: list[Span] = []
    for s in spans:
        parts += [Span(s.blob, s.offset + i, min(limit, s.length - i)) for i in range(0, s.length, limit)]
    return parts

