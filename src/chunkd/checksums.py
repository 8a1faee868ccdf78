"""Body checksums for the Blob front end: Azure Storage's CRC-64 (the ``x-ms-content-crc64`` check) and an MD5
that runs off the event loop.

CRC-64 is Microsoft's native implementation from azure-storage-extensions (~1.8 GB/s measured here), with a
pure-Python table loop (~7 MB/s) kept for platforms without the wheel. Both give the same check value and can be
continued piece by piece. The native call holds the GIL for its whole input (a 32 MiB call left a waiting thread
no gap in 43 ms), so moving it to a thread would not free the event loop: it runs inline on each arriving piece
(<= 256 KiB, ~0.15 ms), which bounds the stall per piece instead. hashlib's MD5 releases the GIL for large
inputs and costs ~3x the CRC per byte, so :class:`OffLoopMd5` hashes ~1 MiB batches on a worker thread while the
loop serves other connections (``bench/crc_stall.py``; figures in bench/README.md).

A neutral helper, not a backend: the Blob front end hashes request bodies with it as they stream in."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

_CRC_POLY = 0x9A6C9329AC4BC9B5  # Azure Storage CRC-64 (reflected form of the NVMe polynomial)
_MASK = (1 << 64) - 1


def _table() -> list[int]:
    out = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _CRC_POLY if c & 1 else c >> 1
        out.append(c)
    return out


_CRC_TABLE = _table()


def _crc64_py(data: bytes, crc: int = 0) -> int:
    """Azure's CRC-64 of ``data`` continuing from ``crc``, pure Python (~7 MB/s): the fallback when the
    native wheel is missing."""
    crc = ~crc & _MASK
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return ~crc & _MASK


_native_crc64: Any
try:  # Microsoft's native CRC-64 (~1.8 GB/s): the same check value, ~250x faster than the table loop
    from azure.storage.extensions.checksums import crc64 as _native_crc64
except ImportError:  # pragma: no cover - the wheel is a core dependency; kept for platforms without it
    _native_crc64 = None


def crc64(data: bytes, crc: int = 0) -> int:
    """Azure's CRC-64 of ``data`` continuing from ``crc`` (native when available, else pure Python)."""
    if _native_crc64 is not None:
        return int(_native_crc64.compute(bytes(data), crc))
    return _crc64_py(data, crc)




_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="chunkd-md5")
        return _POOL


class OffLoopMd5:
    """The MD5 of a body's pieces, hashed on a worker thread in batches of ``batch`` bytes, in order, at most one
    batch in flight per body (so memory stays bounded and a slow hash slows its own body, not the loop). A body
    smaller than ``inline_below`` is hashed inline at the end: a thread hop costs more than hashing it.

    The pieces must not change after :meth:`update` (request bodies are ``bytes``)."""

    def __init__(self, batch: int = 1 << 20, inline_below: int = 128 << 10) -> None:
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._batch, self._inline_below = batch, inline_below
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._job: Future[None] | None = None

    async def update(self, piece: bytes) -> None:
        self._pending.append(piece if isinstance(piece, bytes) else bytes(piece))
        self._pending_bytes += len(piece)
        if self._pending_bytes >= self._batch:
            await self._submit()

    async def digest(self) -> bytes:
        """The digest of every piece so far (waits for the batch in flight)."""
        if self._job is None and self._pending_bytes < self._inline_below:
            self._hash(self._take())
        else:
            await self._submit()
            await self._wait()
        return self._md5.digest()

    def _take(self) -> list[bytes]:
        pieces, self._pending, self._pending_bytes = self._pending, [], 0
        return pieces

    async def _submit(self) -> None:
        await self._wait()  # in order: the previous batch first
        self._job = _pool().submit(self._hash, self._take())

    async def _wait(self) -> None:
        job, self._job = self._job, None
        if job is None:
            return
        if not job.done():  # a finished job needs no loop round-trip
            await asyncio.wrap_future(job)
        job.result()

    def _hash(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self._md5.update(piece)
