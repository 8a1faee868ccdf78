"""Publishing a list of byte ranges of staged objects (pieces) as one object, inside the store where S3 can.

S3 composes an object from parts of a multipart upload: UploadPartCopy takes a range of an existing
object (5 MiB to 5 GiB) without the bytes leaving the store; every part but the last must be at least
5 MiB, and there are at most 10,000 parts. So, by the sizes of the sources:

* none: an empty object (one PUT);
* one whole object: CopyObject (server-side);
* all smaller than 5 MiB (tus appends of 64 KiB): nothing can be copied, so the sources are read in
  order, a batch at a time, and streamed into the target (one PUT up to :data:`SINGLE_PUT` bytes, else
  obstore's multipart upload): bounded memory, and the cheapest CPU per byte;
* otherwise (:func:`plan`): a multipart upload whose parts are UploadPartCopy of each source of 5 MiB
  or more (split at 5 GiB), and UploadPart of each run of smaller sources coalesced to about
  :data:`PART_TARGET` bytes -- only those are read through this process. A run too short to stand as a
  part borrows the head of the next large source. With more than 10,000 parts, runs of 10,000 are
  assembled into temporary objects first, which are then copied server-side into the target.

Publishing is atomic (CompleteMultipartUpload, PUT and CopyObject replace the target at once), consumes
nothing and can be repeated. A source that is missing or shorter than recorded raises PiecesMissing and
the multipart upload is aborted; nothing is published.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import obstore

from chunkd.core.errors import PiecesMissing
from chunkd.storage._s3_config import Keys
from chunkd.storage._s3_errors import UploadVanished, s3_errors
from chunkd.storage._s3_pieces import Source

if TYPE_CHECKING:
    from obstore.store import S3Store as ObjectStore
    from types_boto3_s3 import S3Client

__all__ = ["Assembler", "Copy", "Upload", "plan"]

log = logging.getLogger("chunkd.storage.s3")

MIN_PART = 5 << 20
MAX_PART = 5 << 30
MAX_PARTS = 10_000
PART_TARGET = 8 << 20
SINGLE_PUT = 8 << 20
PARALLEL = 4  # parts in flight per assembly (each Upload part holds < PART_TARGET + MIN_PART bytes)
FETCH_PARALLEL = 16  # GETs in flight while reading a run of small sources


@dataclass(frozen=True)
class Copy:
    """A part copied server-side from a range of one object."""

    src: Source

    @property
    def size(self) -> int:
        return self.src.length


@dataclass(frozen=True)
class Upload:
    """A part made of ranges read through this process."""

    srcs: tuple[Source, ...]

    @property
    def size(self) -> int:
        return sum(s.length for s in self.srcs)


Part = Copy | Upload


def plan(sources: Sequence[Source]) -> list[Part]:
    """Parts for a multipart upload of ``sources`` (see the module docstring); every part but the last is
    at least MIN_PART, no Copy exceeds MAX_PART, and each Upload holds less than PART_TARGET + MIN_PART."""
    parts: list[Part] = []
    pending: list[Source] = []
    size = 0

    def flush() -> None:
        nonlocal size
        if pending:
            parts.append(Upload(tuple(pending)))
            pending.clear()
            size = 0

    for src in sources:
        if src.length == 0:
            continue
        if src.length < MIN_PART:
            pending.append(src)
            size += src.length
            if size >= PART_TARGET:
                flush()
            continue
        offset, length = src.offset, src.length
        if 0 < size < MIN_PART:  # the run before this source is too short to be a part of its own
            need = MIN_PART - size
            if length - need < MIN_PART:  # too short to lend a head and still be copied: read it all
                pending.append(src)
                flush()
                continue
            pending.append(Source(src.key, offset, need))
            offset, length = offset + need, length - need
        flush()
        count = math.ceil(length / MAX_PART)
        for i in range(count):  # even splits: each at least MAX_PART / 2 when there are several
            a, b = length * i // count, length * (i + 1) // count
            parts.append(Copy(Source(src.key, offset + a, b - a)))
    flush()
    return parts


async def run_all(jobs: Sequence[Callable[[], Awaitable[None]]], parallel: int) -> None:
    """Run ``jobs`` with at most ``parallel`` at once; the first failure cancels the rest and is raised
    as itself (not as an exception group)."""
    failure: list[BaseException] = []
    it = iter(jobs)

    async def worker(scope: anyio.CancelScope) -> None:
        for job in it:
            try:
                await job()
            except Exception as exc:
                failure.append(exc)
                scope.cancel()
                return

    async with anyio.create_task_group() as tg:
        for _ in range(min(parallel, len(jobs))):
            tg.start_soon(worker, tg.cancel_scope)
    if failure:
        raise failure[0]


class Assembler:
    """Publishes sources as objects of one bucket (obstore for bytes, boto3 for the multipart calls)."""

    def __init__(self, store: ObjectStore, client: S3Client, bucket: str, keys: Keys) -> None:
        self.store, self.client, self.bucket, self.keys = store, client, bucket, keys

    async def publish(self, sources: Sequence[Source], dst: str, whole_size: int | None = None) -> None:
        """Publish the concatenation of ``sources`` at ``dst``. ``whole_size``: the size of the single
        source's object when the caller knows it (a copy of an object)."""
        sources = [s for s in sources if s.length]
        total = sum(s.length for s in sources)
        if not sources:
            with s3_errors():
                await obstore.put_async(self.store, dst, b"", use_multipart=False)
        elif len(sources) == 1 and sources[0].offset == 0 and total <= MAX_PART and \
                await self._whole(sources[0], whole_size):
            with s3_errors(PiecesMissing):
                await obstore.copy_async(self.store, sources[0].key, dst)
        elif all(s.length < MIN_PART for s in sources):
            await self._stream(sources, dst, total)
        else:
            for attempt in range(3):
                try:
                    await self._multipart(plan(sources), dst)
                    return
                except UploadVanished:  # aborted by another node's garbage collection: start again
                    if attempt == 2:
                        raise

    async def _whole(self, src: Source, size: int | None) -> bool:
        if size is None:
            with s3_errors(PiecesMissing):
                size = (await obstore.head_async(self.store, src.key))["size"]
        if size < src.length:
            raise PiecesMissing(f"{src.key} is shorter than recorded")
        return size == src.length

    async def fetch(self, src: Source) -> bytes:
        with s3_errors(PiecesMissing):
            result = await obstore.get_async(self.store, src.key,
                                             options={"range": (src.offset, src.offset + src.length)})
            data = bytes(await result.bytes_async())
        if len(data) != src.length:
            raise PiecesMissing(f"{src.key} is shorter than recorded")
        return data

    async def fetch_all(self, sources: Sequence[Source]) -> list[bytes]:
        got: list[bytes] = [b""] * len(sources)

        async def one(i: int) -> None:
            got[i] = await self.fetch(sources[i])

        await run_all([partial(one, i) for i in range(len(sources))], FETCH_PARALLEL)
        return got

    async def _stream(self, sources: Sequence[Source], dst: str, total: int) -> None:
        if total <= SINGLE_PUT:
            data = b"".join(await self.fetch_all(sources))
            with s3_errors():
                await obstore.put_async(self.store, dst, data, use_multipart=False)
            return
        # parts large enough that even a huge object stays within the part limit
        buffer = max(PART_TARGET, math.ceil(total / (MAX_PARTS - 1)))
        writer = obstore.open_writer_async(self.store, dst, buffer_size=buffer, max_concurrency=2)
        batch: list[Source] = []
        size = 0
        # on failure the writer is dropped unclosed: its multipart upload stays incomplete (nothing is
        # published) until garbage collection aborts it
        for i, src in enumerate(sources):
            batch.append(src)
            size += src.length
            if size >= PART_TARGET or len(batch) >= 4 * FETCH_PARALLEL or i == len(sources) - 1:
                for data in await self.fetch_all(batch):
                    with s3_errors():
                        await writer.write(data)
                batch, size = [], 0
        with s3_errors():
            await writer.close()

    async def _multipart(self, parts: list[Part], dst: str) -> None:
        if len(parts) <= MAX_PARTS:
            await self._upload(parts, dst)
            return
        made: list[str] = []
        try:
            staged: list[Source] = []
            for i in range(0, len(parts), MAX_PARTS):
                chunk = parts[i:i + MAX_PARTS]
                made.append(self.keys.new_tmp())
                await self._upload(chunk, made[-1])
                staged.append(Source(made[-1], 0, sum(p.size for p in chunk)))
            await self.publish(staged, dst)
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    with s3_errors():
                        await obstore.delete_async(self.store, made)
                except Exception:  # garbage collection removes temporary objects it finds later
                    log.warning("could not delete temporary objects %s", made, exc_info=True)

    async def _upload(self, parts: list[Part], dst: str) -> None:
        with s3_errors():
            created = await self._call(self.client.create_multipart_upload, Bucket=self.bucket, Key=dst)
        upload_id = created["UploadId"]
        etags = [""] * len(parts)

        async def one(i: int) -> None:
            part = parts[i]
            if isinstance(part, Copy):
                src = part.src
                with s3_errors(PiecesMissing):
                    r = await self._call(self.client.upload_part_copy, Bucket=self.bucket, Key=dst,
                                         UploadId=upload_id, PartNumber=i + 1,
                                         CopySource={"Bucket": self.bucket, "Key": src.key},
                                         CopySourceRange=f"bytes={src.offset}-{src.offset + src.length - 1}")
                etags[i] = r["CopyPartResult"]["ETag"]
            else:
                data = b"".join(await self.fetch_all(part.srcs))
                with s3_errors():
                    r = await self._call(self.client.upload_part, Bucket=self.bucket, Key=dst,
                                         UploadId=upload_id, PartNumber=i + 1, Body=data)
                etags[i] = r["ETag"]

        try:
            await run_all([partial(one, i) for i in range(len(parts))], PARALLEL)
            with s3_errors():
                await self._call(self.client.complete_multipart_upload, Bucket=self.bucket, Key=dst,
                                 UploadId=upload_id, MultipartUpload={
                                     "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
        except BaseException:
            with anyio.CancelScope(shield=True):
                try:
                    await self._call(self.client.abort_multipart_upload, Bucket=self.bucket, Key=dst,
                                     UploadId=upload_id)
                except Exception:  # garbage collection aborts it later
                    log.warning("could not abort the multipart upload of %s", dst, exc_info=True)
            raise

    @staticmethod
    async def _call(fn: Callable[..., Any], **kwargs: Any) -> Any:
        """A boto3 call in a worker thread (boto3 blocks)."""
        return await anyio.to_thread.run_sync(partial(fn, **kwargs))
