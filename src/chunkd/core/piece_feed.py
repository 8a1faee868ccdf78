"""Body plumbing of the write path: cutting a body into the pieces of claimed ranges, and the checks on a
body's length. Used by :mod:`chunkd.core.writes`; no metadata transactions here."""

from __future__ import annotations

import time
from dataclasses import replace

from chunkd.core._base import EngineBase
from chunkd.core.body import Body, ClientGone
from chunkd.core.bytestore import PieceWriter
from chunkd.core.claims import Lease
from chunkd.core.errors import LengthMismatch
from chunkd.core.models import Piece
from chunkd.core.ranges import Range

__all__ = ["BodyEnded", "PieceFeed", "counted", "drain_exact"]


class PieceFeed:
    """Cuts a body into the pieces of the claimed ranges: bytes outside them (already received) are
    dropped; each range becomes one piece, finished (flushed) as soon as its last byte is in."""

    def __init__(self, engine: EngineBase, ref: str, todo: list[Range], lease: Lease, tag: str = "") -> None:
        self._engine, self._ref, self._todo, self._lease, self._tag = engine, ref, todo, lease, tag
        self._writer: PieceWriter | None = None
        self.pieces: list[Piece] = []

    async def write(self, data: bytes, pos: int) -> None:
        end = pos + len(data)
        durable = self._engine.config.durable
        while self._todo and self._todo[0][0] < end:
            s, e = self._todo[0]
            a, b = max(s, pos), min(e, end)
            if self._writer is None:
                await self._lease.keep()
                self._writer = await self._engine.storage.open_piece(self._ref, a, durable=durable)
            await self._lease.keep()
            await self._writer.write(data if (a, b) == (pos, end) else memoryview(data)[a - pos:b - pos])
            if b < e:
                return
            await self._lease.keep()  # finishing writes out what the writer buffered
            await self._finish_piece()
            self._todo.pop(0)

    async def finish(self) -> None:
        """Finish the piece in progress with what it has (a body that ended early)."""
        if self._writer is not None:
            await self._lease.keep()
            await self._finish_piece()

    async def _finish_piece(self) -> None:
        assert self._writer is not None
        flushing = time.perf_counter()
        piece = await self._writer.finish(self._engine.config.durable)
        self._engine.stats.flush(time.perf_counter() - flushing)
        self.pieces.append(replace(piece, tag=self._tag) if self._tag else piece)
        self._writer = None

    async def abort(self) -> None:
        if self._writer is not None:
            await self._writer.abort()
            self._writer = None


async def drain_exact(body: Body, expected: int) -> None:
    got = 0
    async for piece in body:
        got += len(piece)
        if got > expected:
            raise LengthMismatch("the body is longer than the declared range")
    if got != expected:
        raise LengthMismatch(f"the body has {got} bytes, the range needs {expected}")


class BodyEnded(ClientGone):
    """A body of undeclared length ended normally (append_at keeps what arrived)."""


def counted(body: Body, count: int | None) -> Body:
    """A body of declared length as it is; one of undeclared length ends with BodyEnded."""
    return body if count is not None else ended_by(body)


async def ended_by(body: Body) -> Body:
    async for piece in body:
        yield piece
    raise BodyEnded()
