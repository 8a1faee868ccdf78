"""Small writes in one worker-thread hop: claim, data flush and record of a chunk that fits in memory.

A chunk of at most ``SMALL_BODY`` bytes whose body arrived whole (its first piece holds every byte: 96 %
of 64 KiB requests from Python's http.client here) is taken into memory (the piece writer would buffer that much anyway
before its first ``pwritev``), then one worker thread runs what the streaming path
(:meth:`WriteOps._write_claimed`) spreads over three: the claim transaction, the pieces' ``pwritev`` +
``fdatasync``, and the record transaction (group commit included). Each thread hop costs ≈ 0.1 ms of CPU
(event-loop wake-up, futex, self-pipe), a large part of a 64 KiB request; the transactions, their order and
every guarantee are those of the streaming path: the claim is taken before any byte reaches the byte store,
the bytes are durable before the record commits, and the record commits before the caller may answer 2xx;
an error after the claim releases it, and what was written unrecorded is garbage.

With a store that offers :class:`~chunkd.core.store.HeldWrites` (PostgreSQL) the three steps run in ONE
metadata transaction that keeps the session's row locked in place of a claim row (one commit per chunk, not
two); the order and the guarantees are the same.

Used only when the metadata store has :class:`~chunkd.core.store.BlockingWrites` and the byte store
:class:`~chunkd.core.bytestore.BlockingPieces` (SQL + local files). Anything unusual -- the claim finds
another live writer, the session is not open, the body is not exactly the declared size or raised --
goes to the streaming path with the body replayed, so that path keeps deciding every such case.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace

from chunkd.core import faults, worker_hop
from chunkd.core._base import EngineBase
from chunkd.core.body import Body
from chunkd.core.bytestore import BlockingPieces
from chunkd.core.errors import WriteInterrupted
from chunkd.core.models import Piece, Session
from chunkd.core.ranges import Range
from chunkd.core.stats import STORAGE_ERRORS
from chunkd.core.store import BlockingWrites, Claimed, Guard, HeldWrites, Recorded, ToRecord, WriteIntent

__all__ = ["SMALL_BODY", "Prefetched", "SmallWrites", "prefetch"]

SMALL_BODY = 256 << 10  # chunks up to this size take the one-hop path

Admit = Callable[[Claimed], None]


@dataclass
class Prefetched:
    """A body read into memory: ``exact`` when it ended normally with exactly the expected size."""

    chunks: list[bytes]
    size: int
    exact: bool
    error: BaseException | None
    rest: AsyncIterator[bytes] | None  # the unread remainder of a body longer than expected

    def replay(self) -> Body:
        """The same body again, for the streaming path: what was read, then the error or the rest."""
        return _replay(self)


async def prefetch(body: Body, expected: int) -> Prefetched:
    """Read the first piece of ``body``; when it holds all ``expected`` bytes, also the body's end. An error
    is kept, not raised. Only a body that arrived whole is taken before its claim: a body still arriving
    (a slow client) is streamed under its claim, so that a live writer keeps its range against a retry
    (the streaming path's rule, :mod:`chunkd.core.claims`)."""
    chunks: list[bytes] = []
    it = aiter(body)
    try:
        try:
            chunks.append(await anext(it))
            if len(chunks[0]) != expected:
                return Prefetched(chunks, len(chunks[0]), False, None, it)
            chunks.append(await anext(it))  # more than declared: replayed, and the streaming path refuses it
        except StopAsyncIteration:
            size = sum(len(c) for c in chunks)
            return Prefetched(chunks, size, size == expected, None, None)
    except Exception as exc:  # ClientGone, a checksum mismatch: the streaming path handles it as it arrives
        return Prefetched(chunks, sum(len(c) for c in chunks), False, exc, None)
    return Prefetched(chunks, sum(len(c) for c in chunks), False, None, it)


async def _replay(pre: Prefetched) -> Body:
    for data in pre.chunks:
        yield data
    if pre.error is not None:
        raise pre.error
    if pre.rest is not None:
        async for data in pre.rest:
            yield data


@dataclass(frozen=True)
class SmallOutcome:
    """What the hop did: ``recorded`` None means nothing was written and the claim is released (or was
    never taken): the caller takes the streaming path, or raises ``error`` (the admission's refusal)."""

    claimed: Claimed
    recorded: Recorded | None = None
    pieces: tuple[Piece, ...] = ()
    error: Exception | None = None


class SmallWrites(EngineBase):
    _blocking_store: BlockingWrites | None
    _held_store: HeldWrites | None

    def _small_path(self, size: int) -> BlockingWrites | None:
        """The store's blocking calls when a write of ``size`` bytes may take the one-hop path."""
        if not 0 < size <= SMALL_BODY:
            return None
        try:
            return self._blocking_store
        except AttributeError:  # first use: a protocol isinstance costs microseconds, so only once
            store = self.store
            usable = self.capabilities.blocking_pieces and isinstance(store, BlockingWrites)
            self._blocking_store = store if usable and isinstance(store, BlockingWrites) else None
            self._held_store = store if usable and isinstance(store, HeldWrites) else None
            return self._blocking_store

    async def _write_small(self, store: BlockingWrites, intent: WriteIntent, chunks: list[bytes], admit: Admit, *,
                           missing_limit: int | None = None, guard: Guard | None = None,
                           tag: str = "") -> SmallOutcome:
        """Claim ``intent``, run ``admit`` on what the claim read (it raises to refuse), write the claimed
        parts of ``chunks`` (``[intent.start, intent.end)``) as pieces and record them, in one worker thread."""
        return await worker_hop.run_in_worker(self._small_blocking, store, intent, chunks, admit, missing_limit,
                                              guard, tag)

    def _small_blocking(self, store: BlockingWrites, intent: WriteIntent, chunks: list[bytes], admit: Admit,
                        missing_limit: int | None, guard: Guard | None, tag: str) -> SmallOutcome:
        held = self._held_store
        if held is not None and guard == intent.guard:  # the claim checks the guard and keeps it locked
            return self._small_held(held, intent, chunks, admit, missing_limit, tag)
        claimed = store.claim_blocking(intent, self.clock(), self.config.lease)
        claimed_at = time.monotonic()
        claim, session, token = claimed.claim, claimed.session, intent.token
        if claim is None or claim.busy or not claim.to_write:
            if claim is not None and claim.to_write:
                store.release_blocking(session.id, token)
            return SmallOutcome(claimed)  # not open, or other live writers: the streaming path decides
        try:
            admit(claimed)
        except Exception as exc:
            store.release_blocking(session.id, token)
            return SmallOutcome(claimed, error=exc)
        try:
            # the lease rule of the streaming path (claims.Lease): renew before writing once it is old
            if time.monotonic() - claimed_at > self.config.renew_interval and \
                    not store.renew_blocking(session.id, token, self.clock(), self.config.lease):
                raise WriteInterrupted("another request took over this range")
            pieces = self._write_pieces(session, intent, claim.to_write, chunks, tag)
            faults.reached("small-written")
            now = self.clock()
            recorded = store.record_blocking(session.id, token, pieces, now, now + self._ttl(session),
                                             missing_limit=missing_limit, guard=guard,
                                             on_complete=self.event("completed", session))
        except BaseException as exc:
            if isinstance(exc, STORAGE_ERRORS):
                self.stats.storage_error("write")
            store.release_blocking(session.id, token)
            raise
        return SmallOutcome(claimed, recorded, tuple(pieces))

    def _small_held(self, store: HeldWrites, intent: WriteIntent, chunks: list[bytes], admit: Admit,
                    missing_limit: int | None, tag: str) -> SmallOutcome:
        """``_small_blocking`` in one metadata transaction: ``write`` runs while the store holds the session."""
        refused: list[Exception] = []
        written: list[Piece] = []

        def write(claimed: Claimed) -> ToRecord | None:
            claim, session = claimed.claim, claimed.session
            if claim is None or claim.busy or not claim.to_write:
                return None  # not open, or other live writers: the streaming path decides
            try:
                admit(claimed)
            except Exception as exc:
                refused.append(exc)
                return None
            written.extend(self._write_pieces(session, intent, claim.to_write, chunks, tag))
            faults.reached("small-written")  # crash tests: die holding the session's row lock
            now = self.clock()
            return ToRecord(tuple(written), now, now + self._ttl(session), missing_limit,
                            self.event("completed", session))

        try:
            claimed, recorded = store.write_held_blocking(intent, self.clock(), write)
        except BaseException as exc:
            if isinstance(exc, STORAGE_ERRORS):
                self.stats.storage_error("write")
            raise  # rolled back: nothing recorded, no claim left behind
        if recorded is None:
            return SmallOutcome(claimed, error=refused[0] if refused else None)
        return SmallOutcome(claimed, recorded, tuple(written))

    def _write_pieces(self, session: Session, intent: WriteIntent, to_write: Sequence[Range], chunks: list[bytes],
                      tag: str) -> list[Piece]:
        """Write the parts ``to_write`` of ``chunks`` (``[intent.start, intent.end)``) as durable pieces; bytes
        outside them were received already and are dropped."""
        storage = self.storage
        assert isinstance(storage, BlockingPieces)
        pieces: list[Piece] = []
        for s, e in to_write:
            flushing = time.perf_counter()
            data = _slice(chunks, s - intent.start, e - intent.start)
            piece = storage.write_piece_blocking(session.storage_ref, s, data, durable=self.config.durable)
            self.stats.flush(time.perf_counter() - flushing)  # EngineStats are thread-safe (docstring)
            pieces.append(replace(piece, tag=tag) if tag else piece)
        return pieces


def _slice(chunks: list[bytes], a: int, b: int) -> Sequence[bytes | memoryview]:
    """Bytes ``[a, b)`` of the concatenation of ``chunks``, without copying."""
    if a == 0 and b == sum(len(c) for c in chunks):
        return chunks
    out: list[bytes | memoryview] = []
    pos = 0
    for c in chunks:
        lo, hi = max(a, pos), min(b, pos + len(c))
        if lo < hi:
            out.append(memoryview(c)[lo - pos:hi - pos])
        pos += len(c)
    return out
