"""Digests a session's whole content must match before it is committed (the IETF draft's ``Repr-Digest`` over an
upload sent in several requests).

A family registers where its sessions keep the digests a client announced (:meth:`EngineBase.expect_digests`,
an :data:`ExpectedDigests`); the engine's commit then reads the assembled object back through the byte store,
hashes it (:func:`digests_of`: streaming, memory bounded by :data:`BATCH`, the hashing itself in a worker
thread) and, on a mismatch, refuses the commit with :class:`DigestMismatch`: the object is deleted and the
session cancelled, never committed (see :mod:`chunkd.core.commits`). The expectation lives in the session's
own record, so a commit finished by another process (a take-over, the sweep) checks it too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping

import anyio.to_thread

from chunkd.core.checksum import ALGORITHMS, UnsupportedAlgorithm
from chunkd.core.errors import ChecksumMismatch
from chunkd.core.models import Session

__all__ = ["BATCH", "DigestMismatch", "ExpectedDigests", "digests_of", "mismatched"]

# what a session expects: chunkd checksum algorithm (chunkd.core.checksum.ALGORITHMS) -> raw digest; empty: none
ExpectedDigests = Callable[[Session], Mapping[str, bytes]]

BATCH = 1 << 20  # bytes gathered before one hop to the worker thread (hashlib releases the GIL on large updates)


class DigestMismatch(ChecksumMismatch):
    """The assembled content of a session does not match a digest announced for it; the commit was refused."""

    code = "digest_mismatch"


async def digests_of(chunks: AsyncIterator[bytes], algorithms: Iterable[str]) -> dict[str, bytes]:
    """The digests of everything ``chunks`` yields, one per algorithm, hashed off the event loop."""
    hashes = []
    for name in algorithms:
        factory = ALGORITHMS.get(name)
        if factory is None:
            raise UnsupportedAlgorithm(f"unsupported checksum algorithm {name!r}")
        hashes.append((name, factory()))
    batch: list[bytes] = []
    size = 0

    def update(pieces: list[bytes]) -> None:
        for piece in pieces:
            for _, h in hashes:
                h.update(piece)

    async for chunk in chunks:
        batch.append(chunk)
        size += len(chunk)
        if size >= BATCH:
            await anyio.to_thread.run_sync(update, batch)
            batch, size = [], 0
    if batch:
        await anyio.to_thread.run_sync(update, batch)
    return {name: h.digest() for name, h in hashes}


def mismatched(expected: Mapping[str, bytes], actual: Mapping[str, bytes]) -> list[str]:
    """The algorithms whose computed digest differs from the expected one."""
    return [name for name, digest in expected.items() if actual.get(name) != digest]
