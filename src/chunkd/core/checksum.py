"""Per-request body checksums (tus ``Upload-Checksum``): hash while streaming, fail before anything is recorded.

:func:`verified` wraps a body; when the body ends it compares the digest and raises ChecksumMismatch, which
the engine's writers treat like any other error: the claimed range is released and nothing is recorded,
so the whole request is discarded. A body cut short by a disconnect cannot be verified either, so its
ClientGone becomes ChecksumIncomplete (also discarded) instead of keeping a partial prefix.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from typing import Protocol

from chunkd.core.body import Body, ClientGone
from chunkd.core.errors import ChecksumMismatch, InvalidInput


class _Hash(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...


class _Crc32:
    """zlib's CRC-32 behind the hashlib interface; the digest is 4 bytes, big-endian."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes, /) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


ALGORITHMS: dict[str, Callable[[], _Hash]] = {
    "sha1": lambda: hashlib.sha1(usedforsecurity=False),
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
    "md5": lambda: hashlib.md5(usedforsecurity=False),
    "crc32": _Crc32,
}


class UnsupportedAlgorithm(InvalidInput):
    """The checksum algorithm is not supported."""

    code = "unsupported_checksum_algorithm"


class ChecksumIncomplete(InvalidInput):
    """The body ended before it could be verified against its checksum."""

    code = "checksum_incomplete"


def verified(body: Body, algorithm: str, expected: bytes) -> Body:
    """``body`` unchanged, raising ChecksumMismatch at its end if its digest differs from ``expected``."""
    factory = ALGORITHMS.get(algorithm)
    if factory is None:
        raise UnsupportedAlgorithm(f"unsupported checksum algorithm {algorithm!r}; use one of "
                                   + ", ".join(ALGORITHMS))
    return _verify(body, factory(), expected)


async def _verify(body: Body, digest: _Hash, expected: bytes) -> Body:
    try:
        async for piece in body:
            digest.update(piece)
            yield piece
    except ClientGone as exc:
        raise ChecksumIncomplete("the connection closed before the checksummed body was complete") from exc
    if digest.digest() != expected:
        raise ChecksumMismatch("the body does not match its Upload-Checksum")
