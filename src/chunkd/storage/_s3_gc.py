"""Garbage collection of the S3 byte store: what crashed nodes and lost races leave in the bucket.

Any node may run it, all at once (every step is a delete or abort that is fine to repeat):

* **staging refs** (``staging/<ref>/``) whose session the metadata store no longer knows as live
  (``is_live(ref)`` is False) and whose newest piece, and newest part of a piece still being streamed,
  is older than ``orphan_age``: the ref is discarded;
* **temporary objects** (``tmp/``) older than ``orphan_age``: intermediates of an assembly of more than
  10,000 parts that crashed;
* **incomplete multipart uploads** under the prefix with no activity for ``upload_grace`` (initiated, and
  last part uploaded, before then): pieces whose writer died or gave up, assemblies that crashed. S3
  keeps these (and bills for their parts) forever otherwise; a bucket lifecycle rule
  (AbortIncompleteMultipartUpload) is a good second line.

A scan lists the whole staging area, so it runs at most once per ``scan_interval`` in each process.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import obstore

from chunkd.storage._s3_config import Keys
from chunkd.storage._s3_errors import UploadVanished, s3_errors

if TYPE_CHECKING:
    from obstore.store import S3Store as ObjectStore
    from types_boto3_s3 import S3Client

__all__ = ["ORPHAN_AGE", "SCAN_INTERVAL", "UPLOAD_GRACE", "Collector"]

ORPHAN_AGE = 600.0  # pieces this young may belong to a write whose session is still being recorded
UPLOAD_GRACE = 3600.0  # a multipart upload idle this long is dead (parts arrive every few seconds)
SCAN_INTERVAL = 600.0

Discard = Callable[[str], Awaitable[None]]


class Collector:
    def __init__(self, store: ObjectStore, client: S3Client, bucket: str, keys: Keys, *,
                 orphan_age: float, upload_grace: float, scan_interval: float) -> None:
        self.store, self.client, self.bucket, self.keys = store, client, bucket, keys
        self.orphan_age, self.upload_grace, self.scan_interval = orphan_age, upload_grace, scan_interval
        self._next_scan = 0.0  # only a rate limit: any process may scan

    async def collect(self, is_live: Callable[[str], Awaitable[bool]], discard: Discard) -> int:
        now = time.time()
        if now < self._next_scan:
            return 0
        self._next_scan = now + self.scan_interval
        uploads = await self._uploads()
        removed = await self._refs(is_live, discard, uploads, now)
        removed += await self._tmp(now)
        for upload in uploads:
            if await self._idle_since(upload) < now - self.upload_grace:
                try:
                    with s3_errors():
                        await self._call(self.client.abort_multipart_upload, Bucket=self.bucket,
                                         Key=upload["Key"], UploadId=upload["UploadId"])
                except UploadVanished:  # completed or aborted meanwhile: fine
                    continue
                removed += 1
        return removed

    async def _refs(self, is_live: Callable[[str], Awaitable[bool]], discard: Discard,
                    uploads: list[dict[str, Any]], now: float) -> int:
        with s3_errors():
            listing = await obstore.list_with_delimiter_async(self.store, self.keys.staging[:-1])
        removed = 0
        for folder in listing["common_prefixes"]:
            ref = folder.rsplit("/", 1)[-1]
            if await is_live(ref):
                continue
            newest = 0.0
            with s3_errors():
                async for batch in obstore.list(self.store, folder):
                    newest = max([newest, *(o["last_modified"].timestamp() for o in batch)])
            for upload in uploads:  # a piece of this ref still being streamed
                if upload["Key"].startswith(folder + "/"):
                    newest = max(newest, await self._idle_since(upload))
            if newest < now - self.orphan_age:
                await discard(ref)
                removed += 1
        return removed

    async def _tmp(self, now: float) -> int:
        old: list[str] = []
        with s3_errors():
            async for batch in obstore.list(self.store, self.keys.tmp[:-1]):
                old += [o["path"] for o in batch if o["last_modified"].timestamp() < now - self.orphan_age]
            if old:
                await obstore.delete_async(self.store, old)
        return len(old)

    async def _uploads(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        marker: dict[str, str] = {}
        while True:
            with s3_errors():
                page = await self._call(self.client.list_multipart_uploads, Bucket=self.bucket,
                                        Prefix=self.keys.root, **marker)
            found += page.get("Uploads", [])
            if not page.get("IsTruncated"):
                return found
            marker = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}

    async def _idle_since(self, upload: dict[str, Any]) -> float:
        """When the upload last showed activity: initiated, or its newest part. (Some emulators report a
        fixed, ancient initiation time, so the parts are asked too.)"""
        newest = _ts(upload["Initiated"])
        if newest >= time.time() - self.upload_grace:
            return newest
        marker = 0
        while True:
            try:
                with s3_errors():
                    page = await self._call(self.client.list_parts, Bucket=self.bucket, Key=upload["Key"],
                                            UploadId=upload["UploadId"], PartNumberMarker=marker)
            except UploadVanished:
                return newest
            newest = max([newest, *(_ts(p["LastModified"]) for p in page.get("Parts", []))])
            if not page.get("IsTruncated"):
                return newest
            marker = int(page["NextPartNumberMarker"])

    @staticmethod
    async def _call(fn: Callable[..., Any], **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(partial(fn, **kwargs))


def _ts(value: datetime) -> float:
    return value.timestamp()

