"""Request bodies as the core sees them: async iterators of bytes that raise ClientGone on disconnect."""

from __future__ import annotations

from collections.abc import AsyncIterator

from chunkd.core.errors import ChunkdError

Body = AsyncIterator[bytes]


class ClientGone(ChunkdError):
    """The client disconnected before the body was complete."""

    code = "client_gone"


async def empty_body() -> Body:
    return
    yield b""  # pragma: no cover - makes this an async generator
