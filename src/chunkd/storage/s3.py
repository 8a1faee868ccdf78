"""Byte storage in an S3 bucket (AWS or any S3-compatible store): ``--storage 's3://BUCKET[/PREFIX]?
endpoint=URL&region=REGION'`` (:mod:`chunkd.storage._s3_config`), ``pip install 'chunkd[s3]'``.

Every node of a cluster uses the same bucket and prefix; nothing is kept on a node's disk. Bucket
layout (``PREFIX/`` is empty or ends with ``/``)::

    PREFIX/staging/<ref>/<start:020d>-<random>        one immutable object per piece of a session; the
    PREFIX/staging/<ref>/<start:020d>-<random>.<n>    name after <ref>/ is the piece's handle; pieces
                                                      over 5 GiB go on in further segments (.1, .2 ...)
    PREFIX/objects/<namespace>/<key>                  published objects, under their own keys
    PREFIX/tmp/<random>                               intermediates of an assembly of > 10,000 parts

* **Pieces** (:mod:`chunkd.storage._s3_pieces`): one PUT per piece up to 8 MiB, a multipart upload of
  the piece's object beyond; acknowledged once stored. Earlier bytes are never uploaded again.
* **assemble** (:mod:`chunkd.storage._s3_assembly`): server-side (UploadPartCopy, CopyObject) for
  pieces of 5 MiB or more; runs of smaller pieces are read and coalesced into parts. Atomic, idempotent,
  consumes nothing; PiecesMissing when a piece object is gone.
* **Folders** are key prefixes, as in every object store. An object store would let ``a`` and ``a/b``
  both exist, so before publishing chunkd checks the target as a file system would: PathConflict when
  objects exist below the target's key (it is a folder) or when one of its parent keys is an object.
  The check and the publish are two steps: two nodes publishing ``a`` and ``a/b`` at the same instant
  can both succeed (listings then show ``a`` as a file and a folder). ``delete_folder`` deletes in
  batches of 1,000 keys (DeleteObjects), so a reader may see a folder half deleted.
* **Reads** are one ranged GET each, streamed; a read that started before its object was replaced or
  deleted finishes with the old bytes (S3 serves a GET from the version it started on).
* **Garbage** (:mod:`chunkd.storage._s3_gc`): staging refs of dead sessions, stale intermediates and
  incomplete multipart uploads, found by any node.
* No capacity figure (UsageReport): an object store has none. No StorageFull either.
* An object's ``version`` is derived from its ETag (content-based), ``modified_at`` is S3's
  LastModified (one-second resolution on AWS).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import obstore

from chunkd.core.errors import InvalidPath, PathConflict, PiecesMissing
from chunkd.core.models import Listing, ObjectInfo, Piece
from chunkd.storage._s3_assembly import Assembler, run_all
from chunkd.storage._s3_config import Keys, S3Settings, make_clients, parse_url
from chunkd.storage._s3_errors import StorageUnavailable, s3_errors
from chunkd.storage._s3_gc import ORPHAN_AGE, SCAN_INTERVAL, UPLOAD_GRACE, Collector
from chunkd.storage._s3_pieces import S3PieceWriter, Source, sources_of

__all__ = ["S3Store", "from_url"]

READ_CHUNK = 1 << 20


def from_url(url: str, data_dir: Path) -> S3Store:
    """The registry's factory (:mod:`chunkd.storage`): the data directory is not used."""
    store = S3Store(parse_url(url))
    store.check_bucket()
    return store


class S3Store:
    """Pieces and published objects in one bucket; see the module docstring."""

    name = "s3"
    copy_free_assembly = False  # pieces under 5 MiB are read back and re-uploaded at commit

    def __init__(self, settings: S3Settings, *, orphan_age: float = ORPHAN_AGE, upload_grace: float = UPLOAD_GRACE,
                 scan_interval: float = SCAN_INTERVAL) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self.store, self.client = make_clients(settings)
        self.keys = Keys(settings.prefix)
        self.assembler = Assembler(self.store, self.client, self.bucket, self.keys)
        self.collector = Collector(self.store, self.client, self.bucket, self.keys, orphan_age=orphan_age,
                                   upload_grace=upload_grace, scan_interval=scan_interval)

    def check_bucket(self) -> None:
        """Fail now, with a clear error, when the bucket cannot be reached (start-up)."""
        try:
            with s3_errors():
                self.client.head_bucket(Bucket=self.bucket)
        except FileNotFoundError:
            raise StorageUnavailable(f"the S3 bucket {self.bucket!r} does not exist") from None

    # -- pieces -----------------------------------------------------------------------------------
    def new_ref(self, hint: str) -> str:
        safe = "".join(c for c in hint if c.isalnum() or c in "-_")[:64]
        return f"{safe}-{secrets.token_hex(6)}"

    async def open_piece(self, ref: str, start: int, *, durable: bool) -> S3PieceWriter:
        return S3PieceWriter(self.store, self.keys, ref, start)

    async def discard(self, ref: str) -> None:
        await self._delete_below(self.keys.ref_prefix(ref)[:-1])

    async def assemble(self, pieces: Sequence[Piece], namespace: str, key: str) -> ObjectInfo:
        dst = self._target(namespace, key)
        sources = [s for p in pieces for s in sources_of(p, self.keys)]
        await self._check_target(namespace, key)
        await self.assembler.publish(sources, dst)
        return await self._stat_after(namespace, key)

    def _target(self, namespace: str, key: str) -> str:
        if not key:
            raise InvalidPath("an object needs a key")
        return self.keys.object(namespace, key)

    async def _check_target(self, namespace: str, key: str) -> None:
        """PathConflict when ``key`` is a folder or a parent of it is a file (see the module docstring)."""
        segments = key.split("/")
        parents = ["/".join(segments[:i]) for i in range(1, len(segments))]
        found: list[str] = []

        async def folder() -> None:
            if await self.is_folder(namespace, key):
                found.append(f"{key} is a folder")

        async def parent(p: str) -> None:
            if await self._head(self.keys.object(namespace, p)) is not None:
                found.append(f"{p} is a file, where a folder is needed")

        await run_all([folder, *(partial(parent, p) for p in parents)], 8)
        if found:
            raise PathConflict(found[0])

    # -- objects ----------------------------------------------------------------------------------
    async def _head(self, path: str) -> dict[str, Any] | None:
        try:
            with s3_errors():
                return dict(await obstore.head_async(self.store, path))
        except FileNotFoundError:
            return None

    def _info(self, namespace: str, key: str, meta: dict[str, Any]) -> ObjectInfo:
        etag = "".join(c for c in str(meta.get("e_tag") or "") if c in "0123456789abcdef")
        return ObjectInfo(namespace, key, int(meta["size"]), meta["last_modified"].timestamp(),
                          int(etag[:15] or "0", 16))

    async def stat(self, namespace: str, key: str) -> ObjectInfo | None:
        path = self.keys.object(namespace, key)
        if not key:
            return None
        meta = await self._head(path)
        return self._info(namespace, key, meta) if meta is not None else None

    async def _stat_after(self, namespace: str, key: str) -> ObjectInfo:
        info = await self.stat(namespace, key)
        if info is None:  # deleted again by someone else in the meantime
            raise FileNotFoundError(key)
        return info

    async def read(self, namespace: str, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        path = self.keys.object(namespace, key)
        if not key:
            raise FileNotFoundError("a folder is not a file")
        if end <= start:
            if await self._head(path) is None:
                raise FileNotFoundError(key)
            return
        try:
            with s3_errors():
                result = await obstore.get_async(self.store, path, options={"range": (start, end)})
        except FileNotFoundError:  # missing, or the range starts at or after its end (416)
            if await self._head(path) is None:
                raise
            return
        with s3_errors():
            async for chunk in result.stream(min_chunk_size=READ_CHUNK):
                yield bytes(chunk)

    async def delete(self, namespace: str, key: str) -> bool:
        path = self.keys.object(namespace, key)
        if not key or await self._head(path) is None:
            return False
        with s3_errors():
            await obstore.delete_async(self.store, path)
        return True

    # -- folders ----------------------------------------------------------------------------------
    async def list_folder(self, namespace: str, prefix: str) -> Listing:
        base = self.keys.namespace(namespace)
        folder = self.keys.folder(namespace, prefix)
        with s3_errors():
            listing = await obstore.list_with_delimiter_async(self.store, folder[:-1])
        files = [self._info(namespace, o["path"][len(base):], dict(o)) for o in listing["objects"]]
        folders = [p[len(base):] for p in listing["common_prefixes"]]
        return Listing(sorted(files, key=lambda i: i.key), sorted(folders))

    async def walk(self, namespace: str, prefix: str) -> list[ObjectInfo]:
        one = await self.stat(namespace, prefix) if prefix else None
        if one is not None:
            return [one]
        base = self.keys.namespace(namespace)
        found: list[ObjectInfo] = []
        with s3_errors():
            async for batch in obstore.list(self.store, self.keys.folder(namespace, prefix)[:-1]):
                found += [self._info(namespace, o["path"][len(base):], dict(o)) for o in batch]
        return sorted(found, key=lambda i: i.key)

    async def is_folder(self, namespace: str, key: str) -> bool:
        folder = self.keys.folder(namespace, key)
        with s3_errors():
            async for batch in obstore.list(self.store, folder[:-1], chunk_size=1):
                if batch:
                    return True
        return False

    async def delete_folder(self, namespace: str, prefix: str) -> bool:
        return await self._delete_below(self.keys.folder(namespace, prefix)[:-1])

    async def _delete_below(self, prefix: str) -> bool:
        doomed: list[str] = []
        with s3_errors():
            async for batch in obstore.list(self.store, prefix):
                doomed += [o["path"] for o in batch]
            if doomed:
                await obstore.delete_async(self.store, doomed)  # DeleteObjects, 1,000 keys a request
        return bool(doomed)

    # -- copy, garbage ----------------------------------------------------------------------------
    async def copy(self, namespace: str, src: str, dst: str) -> ObjectInfo:
        source = self.keys.object(namespace, src)
        target = self._target(namespace, dst)
        meta = await self._head(source) if src else None
        if meta is None:
            raise FileNotFoundError(src)
        if source == target:  # S3 refuses a copy onto itself; the object already is what was asked for
            return self._info(namespace, src, meta)
        await self._check_target(namespace, dst)
        size = int(meta["size"])
        try:
            # server-side: CopyObject up to 5 GiB, UploadPartCopy in ranges beyond
            await self.assembler.publish([Source(source, 0, size)], target, whole_size=size)
        except PiecesMissing as exc:  # deleted meanwhile
            raise FileNotFoundError(src) from exc
        return await self._stat_after(namespace, dst)

    async def collect_garbage(self, is_live: Callable[[str], Awaitable[bool]]) -> int:
        return await self.collector.collect(is_live, self.discard)

