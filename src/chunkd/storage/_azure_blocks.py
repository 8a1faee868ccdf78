"""Pieces as uncommitted blocks of per-session staging blobs, and the plan that publishes them
(:mod:`chunkd.storage.azure` describes the layout and why).

A session's offset space is cut into *segments* of ``segment_size`` bytes; segment ``k`` of ref ``R``
is the staging blob ``staging/R/<k as 8 hex digits>``. A piece writer cuts its bytes into blocks of at
most ``block_size`` that never cross a segment boundary, and puts each block into its segment's blob
with the raw block id ``<block offset, 16 hex><piece nonce, 16 hex>`` (every id of every blob has the
same 32 characters, as Azure requires). The piece's handle ``az1:<segment size, hex>:<nonce>`` is all
:func:`plan` needs to find its blocks again in the blobs' block lists; the segment size travels in the
handle so that changing the setting never strands a live session.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from chunkd.core.errors import InvalidPath, PiecesMissing
from chunkd.core.models import Piece
from chunkd.storage._azure_client import AzureConnection

__all__ = ["AzurePieceWriter", "Plan", "Span", "block_offset", "parse_handle", "plan", "staging_name"]

HANDLE_PREFIX = "az1"


def staging_name(prefix: str, ref: str, segment: int) -> str:
    if not ref or "/" in ref or ref.startswith(".") or any(ord(c) < 33 for c in ref):
        raise InvalidPath("bad staging ref")
    return f"{prefix}staging/{ref}/{segment:08x}"


def block_id(offset: int, nonce: str) -> str:
    return f"{offset:016x}{nonce}"


def block_offset(raw_id: str) -> tuple[int, str] | None:
    """(offset, nonce) of a staging block id; None for ids this store did not make."""
    if len(raw_id) != 32:
        return None
    try:
        return int(raw_id[:16], 16), raw_id[16:]
    except ValueError:
        return None


def parse_handle(piece: Piece) -> tuple[int, str]:
    """(segment size, nonce) of a piece this store wrote; PiecesMissing for any other handle."""
    parts = piece.handle.split(":")
    if len(parts) != 3 or parts[0] != HANDLE_PREFIX or len(parts[2]) != 16:
        raise PiecesMissing(f"piece {piece.start}-{piece.end} of {piece.ref} was not stored in Azure Blob Storage")
    return int(parts[1], 16), parts[2]


class AzurePieceWriter:
    """Buffers up to one block, then Put Block; ``finish`` puts the rest. Azure acknowledges a block only
    once it is stored durably (three copies), so ``durable`` needs nothing more."""

    def __init__(self, conn: AzureConnection, ref: str, start: int, segment_size: int, block_size: int) -> None:
        self._conn, self._ref, self._start = conn, ref, start
        self._segment, self._block = segment_size, block_size
        self._nonce = secrets.token_hex(8)
        self._buf = bytearray()
        self._buf_start = start  # offset of the first buffered byte
        staging_name(conn.target.prefix, ref, 0)  # refuse a bad ref before any byte arrives

    def _limit(self) -> int:
        """Bytes the current block may hold: a block never crosses a segment boundary."""
        boundary = (self._buf_start // self._segment + 1) * self._segment
        return min(self._block, boundary - self._buf_start)

    async def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            take = min(len(view), self._limit() - len(self._buf))
            self._buf += view[:take]
            view = view[take:]
            if len(self._buf) >= self._limit():
                await self._flush()

    async def _flush(self) -> None:
        if not self._buf:
            return
        segment = self._buf_start // self._segment
        name = staging_name(self._conn.target.prefix, self._ref, segment)
        await self._conn.put_block(name, block_id(self._buf_start, self._nonce), bytes(self._buf))
        self._buf_start += len(self._buf)
        self._buf.clear()

    async def finish(self, durable: bool) -> Piece:
        await self._flush()
        handle = f"{HANDLE_PREFIX}:{self._segment:x}:{self._nonce}"
        return Piece(self._ref, self._start, self._buf_start, handle)

    async def abort(self) -> None:
        self._buf.clear()  # blocks already put stay uncommitted: dropped by discard, GC or the seal


@dataclass(frozen=True)
class Span:
    """``length`` bytes at ``offset`` of the sealed staging blob ``blob``."""

    blob: str
    offset: int
    length: int


@dataclass(frozen=True)
class Plan:
    """How to publish: commit each staging blob of ``seals`` with exactly that block list (in offset
    order), then the object is the concatenation of ``spans`` (adjacent runs merged). ``sizes`` is each
    sealed blob's size."""

    seals: dict[str, list[str]]
    sizes: dict[str, int]
    spans: list[Span]


BlockList = dict[str, int]  # raw block id -> size, committed and uncommitted blocks of one blob


def segments_of(prefix: str, pieces: Sequence[Piece]) -> list[str]:
    """The staging blobs holding the pieces' bytes (pieces of foreign stores raise PiecesMissing)."""
    names: dict[str, None] = {}
    for p in pieces:
        if p.size == 0:
            continue
        size, _ = parse_handle(p)
        for k in range(p.start // size, (p.end - 1) // size + 1):
            names[staging_name(prefix, p.ref, k)] = None
    return list(names)


def plan(prefix: str, pieces: Sequence[Piece], lists: dict[str, BlockList]) -> Plan:
    """The plan publishing ``pieces`` in order, given the block lists of :func:`segments_of`'s blobs.
    PiecesMissing when a piece's blocks do not tile its bytes exactly (gone, or never written)."""
    by_nonce: dict[str, dict[str, list[tuple[int, str, int]]]] = {}
    for name, blocks in lists.items():
        index: dict[str, list[tuple[int, str, int]]] = {}
        for raw, size in blocks.items():
            parsed = block_offset(raw)
            if parsed is not None:
                index.setdefault(parsed[1], []).append((parsed[0], raw, size))
        by_nonce[name] = index
    runs: list[tuple[str, list[str]]] = []  # per piece and segment: blob, block ids in order
    needed: dict[str, dict[str, tuple[int, int]]] = {}  # blob -> block id -> (offset, size)
    for p in pieces:
        if p.size == 0:
            continue
        size, nonce = parse_handle(p)
        for k in range(p.start // size, (p.end - 1) // size + 1):
            name = staging_name(prefix, p.ref, k)
            lo, hi = max(p.start, k * size), min(p.end, (k + 1) * size)
            tiles = _tile(sorted(b for b in by_nonce.get(name, {}).get(nonce, []) if lo <= b[0] < hi), lo, hi)
            if tiles is None:
                raise PiecesMissing(f"bytes {lo}-{hi} of {p.ref} are not (or no longer) staged in Azure")
            for offset, raw, length in tiles:
                needed.setdefault(name, {})[raw] = (offset, length)
            runs.append((name, [raw for _, raw, _ in tiles]))
    seals: dict[str, list[str]] = {}
    positions: dict[str, dict[str, int]] = {}
    sizes: dict[str, int] = {}
    for name, wanted in needed.items():
        ordered = sorted(wanted, key=lambda raw: wanted[raw][0])
        seals[name] = ordered
        pos, at = 0, {}
        for raw in ordered:
            at[raw] = pos
            pos += wanted[raw][1]
        positions[name], sizes[name] = at, pos
    spans: list[Span] = []
    for name, ids in runs:
        offset = positions[name][ids[0]]
        length = sum(needed[name][raw][1] for raw in ids)
        last = spans[-1] if spans else None
        if last is not None and last.blob == name and last.offset + last.length == offset:
            spans[-1] = Span(name, last.offset, last.length + length)
        else:
            spans.append(Span(name, offset, length))
    return Plan(seals, sizes, spans)


def _tile(blocks: list[tuple[int, str, int]], lo: int, hi: int) -> list[tuple[int, str, int]] | None:
    """The blocks that cover ``[lo, hi)`` end to end, or None when there is a hole or an overlap."""
    pos = lo
    for offset, _, size in blocks:
        if offset != pos:
            return None
        pos += size
    return blocks if pos == hi else None
