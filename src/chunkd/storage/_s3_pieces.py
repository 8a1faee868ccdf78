"""Pieces of the S3 byte store: each piece is its own immutable object under its session's staging prefix.

A writer is not told a piece's length. It buffers up to :data:`PIECE_BUFFER` bytes: a piece that ends
within that (a 64 KiB tus append, a Service Fabric chunk of a few MiB) costs one PUT when it is finished;
a longer one becomes a multipart upload of that object in parts of :data:`PIECE_BUFFER` bytes, at most
:data:`UPLOAD_CONCURRENCY` parts in flight, so memory stays bounded whatever the body's length. The piece
is acknowledged (``finish`` returns) only once its object is stored, so no acknowledged byte exists only
on this node, and nothing written earlier is ever uploaded again.

A piece longer than :data:`SEGMENT` (5 GiB, the largest part UploadPartCopy takes, 640 parts) goes on
in further objects ``<key>.1``, ``<key>.2``, ...; its handle then ends with ``#<segment size>`` so that
the segments can be found from the handle and the piece's size alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import obstore

from chunkd.core.errors import PiecesMissing
from chunkd.core.models import Piece
from chunkd.storage._s3_config import Keys
from chunkd.storage._s3_errors import s3_errors

if TYPE_CHECKING:
    from obstore import AsyncWritableFile
    from obstore.store import S3Store as ObjectStore

__all__ = ["PIECE_BUFFER", "SEGMENT", "S3PieceWriter", "Source", "sources_of"]

PIECE_BUFFER = 8 << 20
SEGMENT = 5 << 30
UPLOAD_CONCURRENCY = 2


@dataclass(frozen=True)
class Source:
    """``length`` bytes of object ``key`` from ``offset``: what assembly reads or copies."""

    key: str
    offset: int
    length: int


class S3PieceWriter:
    """Streams one piece into its object(s); see the module docstring."""

    def __init__(self, store: ObjectStore, keys: Keys, ref: str, start: int) -> None:
        self._store, self._ref, self._start = store, ref, start
        self._key, self._handle = keys.new_piece(ref, start)
        self._segment_size = SEGMENT  # read once: the handle records the size this piece was cut with
        self._writer: AsyncWritableFile | None = None
        self._segments = 0  # segments finished
        self._in_segment = 0
        self._size = 0

    def _segment_key(self, i: int) -> str:
        return self._key if i == 0 else f"{self._key}.{i}"

    async def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while len(view):
            if self._in_segment == self._segment_size:
                await self._close_segment()
            n = min(len(view), self._segment_size - self._in_segment)
            if self._writer is None:
                self._writer = obstore.open_writer_async(self._store, self._segment_key(self._segments),
                                                         buffer_size=PIECE_BUFFER, max_concurrency=UPLOAD_CONCURRENCY)
            with s3_errors():
                await self._writer.write(view[:n])
            self._in_segment += n
            self._size += n
            view = view[n:]

    async def _close_segment(self) -> None:
        assert self._writer is not None
        writer, self._writer = self._writer, None
        with s3_errors():
            await writer.close()  # a single PUT, or CompleteMultipartUpload
        self._segments += 1
        self._in_segment = 0

    async def finish(self, durable: bool) -> Piece:
        # durable is implied: S3 acknowledges a PUT once the object is stored redundantly
        if self._size == 0:
            return Piece(self._ref, self._start, self._start)  # nothing to store: an empty piece has no object
        await self._close_segment()
        handle = self._handle if self._segments == 1 else f"{self._handle}#{self._segment_size}"
        return Piece(self._ref, self._start, self._start + self._size, handle)

    async def abort(self) -> None:
        # obstore cannot abort its multipart upload: dropping the writer leaves it incomplete (nothing is
        # published), and garbage collection aborts it after its grace; finished segments go with the ref
        self._writer = None


def sources_of(piece: Piece, keys: Keys) -> list[Source]:
    """The objects holding a recorded piece, in order; PiecesMissing when the handle is not this store's."""
    if piece.size == 0:
        return []
    key = keys.piece(piece.ref, piece.handle)
    if key is None:
        raise PiecesMissing(f"piece {piece.start}-{piece.end} of {piece.ref} was not stored in this S3 store")
    _, _, segment = piece.handle.partition("#")
    if not segment:
        return [Source(key, 0, piece.size)]
    step = int(segment)
    return [Source(key if i == 0 else f"{key}.{i}", 0, min(step, piece.size - pos))
            for i, pos in enumerate(range(0, piece.size, step))]
