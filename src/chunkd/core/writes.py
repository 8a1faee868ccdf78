"""The write path of every family: claim, stream the body into pieces, record.

A write that returns normally has made its new bytes durable (when ``durable`` is on) and recorded them,
with the handles of their pieces, in one metadata transaction: that is what lets a front end answer 2xx.
An acknowledged chunk costs two metadata transactions (claim, record) and one data flush per piece --
one piece, unless the request overlaps bytes already received.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import anyio

from chunkd.core import faults
from chunkd.core._base import EngineBase
from chunkd.core.body import Body, ClientGone
from chunkd.core.claims import Lease, claim_free
from chunkd.core.errors import (
    GuardFailed,
    InvalidRange,
    LengthMismatch,
    OffsetMismatch,
    RangeBusy,
    SessionGone,
    TooLarge,
    WriteInterrupted,
)
from chunkd.core.models import Piece, Session, SessionState
from chunkd.core.piece_feed import BodyEnded, PieceFeed, counted, drain_exact
from chunkd.core.principal import Principal
from chunkd.core.ranges import Range
from chunkd.core.small_writes import SmallOutcome, SmallWrites, prefetch
from chunkd.core.stats import STORAGE_ERRORS
from chunkd.core.store import Claimed, ClaimMode, Guard, Recorded, WriteIntent

Check = Callable[[Session], None]
log = logging.getLogger("chunkd.engine")


@dataclass(frozen=True)
class WriteResult:
    session: Session
    new_bytes: int  # bytes of this request that were not already received
    missing: list[Range] | None = None  # the first missing ranges after the write, when asked for
    pieces: tuple[Piece, ...] = ()  # the pieces this write recorded


class WriteOps(SmallWrites, EngineBase):
    async def write_range(self, session_id: str, principal: Principal | None, start: int, end: int, body: Body, *,
                          keep_partial: bool = False, create: Session | None = None, check: Check | None = None,
                          missing_limit: int | None = None, guard: Guard | None = None) -> WriteResult:
        """Write ``[start, end)`` of a session from ``body``, which must hold exactly ``end - start`` bytes.

        Bytes already received are read and dropped, not rewritten; a range that is entirely received is
        a successful no-op (a retry after a lost response), also once the session is committed. With
        ``keep_partial`` a body that ends early (ClientGone) keeps and records what arrived before the
        error is re-raised; otherwise a short or long body raises LengthMismatch and records nothing.

        ``create`` (from :meth:`new_session`) opens the session in the claim's transaction when it does
        not exist; an existing one must then match its target and length (SessionConflict,
        LengthMismatch). ``check`` sees the session as the claim read it, before any byte is written, and
        may raise to refuse the write (a front end's own rules); the owner check comes first. ``principal``
        None skips the owner check: the caller authenticated the session itself (a signed upload URL).
        ``missing_limit`` asks for the first missing ranges after the write (same transaction).
        ``guard`` is a resource condition checked when claiming and when recording (GuardFailed).
        Waits up to ``busy_wait`` while live writers hold part of the range, then raises RangeBusy.
        """
        started = time.perf_counter()
        if start < 0 or end < start:
            raise InvalidRange("start must not exceed end")
        if end > self.config.max_size:
            raise TooLarge(f"the upload is larger than the maximum of {self.config.max_size} bytes")
        token = secrets.token_hex(16)
        intent = WriteIntent(session_id, token, start, end, ClaimMode.RANGE, create, guard)
        def admit(claimed: Claimed) -> None:
            self._admit(claimed, principal, create, check, guard)
            length = claimed.session.length
            if length is not None and end > length:
                raise InvalidRange("the range ends beyond the session's length")

        done, body = await self._try_small(intent, end - start, body, admit, started, retry=create is not None,
                                           missing_limit=missing_limit, guard=guard)
        if done is not None:
            return done
        for attempt in range(2):
            claimed = self._taking_over(await claim_free(self.store, intent, self.clock, self.config.lease,
                                                         self.config.busy_wait))
            try:
                self._admit(claimed, principal, create, check, guard)
            except SessionGone:
                await self._release(claimed, token)
                if create is None or attempt:
                    raise
                await self._expire_if_due(session_id)  # an expired id the sweep has not reached yet
                continue
            except BaseException:
                await self._release(claimed, token)
                raise
            break
        session, claim = claimed.session, claimed.claim
        try:
            if session.length is not None and end > session.length:
                raise InvalidRange("the range ends beyond the session's length")
            if claim is not None and claim.busy:
                raise RangeBusy("another request is still writing part of this range; retry")
        except BaseException:
            await self._release(claimed, token)
            raise
        if claimed.created:
            await self._emit("created", session)
        if claim is None:
            return await self._write_done(session, start, end, body, started)
        return await self._write_claimed(session, token, claim.to_write, start, end, body, keep_partial,
                                         missing_limit, guard, started=started)

    async def write_allocated(self, session_id: str, principal: Principal, length: int, body: Body, *, tag: str,
                              create: Session | None = None, guard: Guard | None = None,
                              check: Check | None = None) -> WriteResult:
        """Store ``body`` (exactly ``length`` bytes) as a new piece labelled ``tag`` at a fresh offset of a
        session of unordered pieces (Azure staged blocks): parallel writers never wait for each other.
        A zero-length body still records an (empty) piece. The session must be open; ``create``,
        ``guard`` and ``check`` are as in :meth:`write_range`. Raises RangeBusy while the session is
        being published (retry), GuardFailed when the guard does not hold."""
        started = time.perf_counter()
        if length < 0 or length > self.config.max_size:
            raise TooLarge(f"a piece is at most {self.config.max_size} bytes")
        token = secrets.token_hex(16)
        # a zero-length piece still takes one byte of offset space, so that every piece has its own start
        intent = WriteIntent(session_id, token, 0, max(1, length), ClaimMode.ALLOCATE, create, guard)
        for attempt in range(2):
            claimed = self._taking_over(await self.store.claim(intent, self.clock(), self.config.lease))
            try:
                self._admit(claimed, principal, None, check, guard)
                if claimed.claim is None or not claimed.claim.to_write:
                    raise RangeBusy("the session is being published; retry")
            except SessionGone:
                await self._release(claimed, token)
                if create is None or attempt:
                    raise
                await self._expire_if_due(session_id)  # idle past its lifetime: a new one replaces it
                continue
            except BaseException:
                await self._release(claimed, token)
                raise
            break
        if claimed.created:
            await self._emit("created", claimed.session)
        assert claimed.claim is not None
        at = claimed.claim.to_write[0][0]
        if length == 0:
            return await self._write_empty(claimed.session, token, at, body, tag, guard)
        return await self._write_claimed(claimed.session, token, [(at, at + length)], at, at + length, body,
                                         False, None, guard, tag, started=started)

    async def _write_empty(self, session: Session, token: str, at: int, body: Body, tag: str,
                           guard: Guard | None) -> WriteResult:
        try:
            await drain_exact(body, 0)
            writer = await self.storage.open_piece(session.storage_ref, at, durable=self.config.durable)
            flushing = time.perf_counter()
            piece = replace(await writer.finish(self.config.durable), tag=tag)
            self.stats.flush(time.perf_counter() - flushing)
            now = self.clock()
            recorded = await self.store.record(session.id, token, [piece], now, now + self._ttl(session), guard=guard)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.store.release(session.id, token)
            raise
        return WriteResult(recorded.session, 0, None, (piece,))

    async def append_at(self, session_id: str, principal: Principal, offset: int, body: Body,
                        count: int | None, *, session: Session | None = None, check: Check | None = None) -> Session:
        """Append ``body`` at ``offset``, which must equal the received contiguous prefix.

        ``count`` is the body's length when the client declared it; None reads until the body ends
        (``session``, the caller's fresh read of it, is needed then). A body cut short by a disconnect keeps
        and records what arrived, then ClientGone is re-raised; a body that raises anything else (a
        checksum mismatch from :func:`chunkd.core.checksum.verified`) records nothing. Raises
        OffsetMismatch (with the real offset), TooLarge beyond the length, RangeBusy while another live
        request appends (after waiting up to one lease for it to finish or die). ``check`` is as in
        :meth:`write_range`. With ``count`` given this is the small-chunk hot path: two metadata
        transactions (claim, record) and one data flush.
        """
        started = time.perf_counter()
        if count is None and (session is None or session.id != session_id):
            session = await self.get_session(session_id, principal=principal)
        if count is not None:
            end = offset + count
            if end > self.config.max_size:
                raise TooLarge(f"the upload would grow beyond the maximum of {self.config.max_size} bytes")
        else:
            assert session is not None
            end = session.length if session.length is not None else self.config.max_size
        token = secrets.token_hex(16)
        intent = WriteIntent(session_id, token, offset, end, ClaimMode.APPEND)
        def admit(claimed: Claimed) -> None:
            self._admit(claimed, principal, None, check, None)
            length = claimed.session.length
            limit = length if length is not None else self.config.max_size
            if end > limit:
                raise TooLarge(f"{end} bytes exceed the upload's length of {limit}")

        if count is not None:  # a body of unknown length never takes the one-hop path
            done, body = await self._try_small(intent, count, body, admit, started, retry=False)
            if done is not None:
                return done.session
        wait = self.config.lease + self.config.renew_interval
        claimed = self._taking_over(await claim_free(self.store, intent, self.clock, self.config.lease, wait))
        session, claim = claimed.session, claimed.claim
        try:
            self._admit(claimed, principal, None, check, None)
            if offset != claimed.prefix:
                raise OffsetMismatch(f"the upload is at offset {claimed.prefix}, not {offset}", offset=claimed.prefix)
            limit = session.length if session.length is not None else self.config.max_size
            if end > limit:
                raise TooLarge(f"{end} bytes exceed the upload's length of {limit}")
            if claim is not None and claim.busy:
                raise RangeBusy("another request is still appending to this upload")
        except BaseException:
            await self._release(claimed, token)
            raise
        if claim is None:  # not open (committed, ...): a retry of bytes already received succeeds
            return (await self._write_done(session, offset, end, counted(body, count), started)).session
        result = await self._write_claimed(session, token, claim.to_write, offset, end, counted(body, count),
                                           True, None, None, started=started)
        return result.session

    def _admit(self, claimed: Claimed, principal: Principal | None, create: Session | None, check: Check | None,
               guard: Guard | None) -> None:
        """The checks between claim and write. The owner check comes first: nothing else may be told to
        another principal."""
        session = claimed.session
        if create is not None and not claimed.created:
            self.check_target(session, create.family, create.namespace, create.key, create.length)
        if principal is not None:
            self._check_owner(session, principal)
        self._check_live(session)
        if guard is not None and claimed.guard_state != guard.value:
            raise GuardFailed("the resource this write depends on changed", state=claimed.guard_state or "")
        if check is not None:
            check(session)

    def _taking_over(self, claimed: Claimed) -> Claimed:
        if claimed.claim is not None and claimed.claim.taken_over:
            self.stats.takeover("write", claimed.claim.taken_over)
            log.info("take-over: session %s: this request took over %d claim(s) whose writer's lease had ended",
                     claimed.session.id, claimed.claim.taken_over)
        return claimed

    async def _release(self, claimed: Claimed, token: str) -> None:
        if claimed.claim is not None and claimed.claim.to_write:
            with anyio.CancelScope(shield=True):
                await self.store.release(claimed.session.id, token)

    async def _write_done(self, session: Session, start: int, end: int, body: Body, started: float) -> WriteResult:
        """A write to a session that is no longer open: fine when every byte was received already."""
        if session.state is not SessionState.OPEN and (await self.store.ranges(session.id)).contains(start, end):
            await drain_exact(body, end - start)
            self.stats.write(session.family, 0, end - start, time.perf_counter() - started)
            return WriteResult(session, 0)
        raise InvalidRange("the session is already committed")

    async def _write_claimed(self, session: Session, token: str, todo: list[Range], start: int, end: int,
                             body: Body, keep_partial: bool, missing_limit: int | None,
                             guard: Guard | None, tag: str = "", *, started: float) -> WriteResult:
        """Stream ``body`` (``[start, end)``) into one piece per claimed range of ``todo``, then record."""
        lease = Lease(self.store, session.id, token, self.clock, self.config.lease, self.config.renew_interval)
        feed = PieceFeed(self, session.storage_ref, list(todo), lease, tag)
        pos = start
        ended: ClientGone | None = None
        try:
            try:
                async for data in body:
                    n = len(data)
                    if pos + n > end:
                        raise LengthMismatch("the body is longer than the declared range")
                    await feed.write(data, pos)
                    pos += n
                if pos != end:
                    raise LengthMismatch(f"the body has {pos - start} bytes, the range needs {end - start}")
            except ClientGone as exc:
                if not keep_partial:
                    raise
                ended = exc
            await feed.finish()
            if ended is not None and not feed.pieces:
                await self.store.release(session.id, token)
                if isinstance(ended, BodyEnded):
                    return WriteResult(session, 0)
                raise ended
            now = self.clock()
            recorded = await self.store.record(session.id, token, feed.pieces, now, now + self._ttl(session),
                                               missing_limit=missing_limit, guard=guard,
                                               on_complete=self.event("completed", session))
        except BaseException as exc:
            if isinstance(exc, WriteInterrupted):  # the other side of a take-over: this writer's lease ran out
                log.info("take-over: a newer request took bytes %d-%d of session %s from this one after its "
                         "%g s lease ended; this request stops", start, end, session.id, self.config.lease)
            if isinstance(exc, STORAGE_ERRORS):
                self.stats.storage_error("write")
                log.warning("byte store error writing bytes %d-%d of session %s: %s: %s", start, end, session.id,
                            type(exc).__name__, exc)
            with anyio.CancelScope(shield=True):
                await feed.abort()
                await self.store.release(session.id, token)
            raise
        result = await self._finish_write(recorded, tuple(feed.pieces), pos - start, started)
        if ended is not None and not isinstance(ended, BodyEnded):
            raise ended
        return result

    async def _finish_write(self, recorded: Recorded, pieces: tuple[Piece, ...], body_bytes: int,
                            started: float) -> WriteResult:
        """After the record committed: events, and the commit of a session that completed."""
        faults.reached("after-record")
        session = recorded.session
        new_bytes = sum(p.size for p in pieces)
        self.stats.write(session.family, new_bytes, body_bytes - new_bytes, time.perf_counter() - started)
        await self._emit("progress", session, new_bytes=new_bytes, body_bytes=body_bytes)
        if new_bytes and session.complete:
            await self._emit("completed", session, stored=True)  # the record transaction wrote it
        if session.state is SessionState.COMMITTING and session.commit_on_complete and new_bytes:
            session = await self.finish_commit(session)
        return WriteResult(session, new_bytes, recorded.missing, pieces)

    async def _try_small(self, intent: WriteIntent, size: int, body: Body, admit: Callable[[Claimed], None],
                         started: float, *, retry: bool, missing_limit: int | None = None,
                         guard: Guard | None = None) -> tuple[WriteResult | None, Body]:
        """A small chunk that arrived whole: claim, flush and record in one worker-thread hop. Returns the
        result, or None and the same body replayed for the streaming path, which decides every other case."""
        small = self._small_path(size)
        if small is None:
            return None, body
        pre = await prefetch(body, size)
        if pre.exact:
            done = await self._write_small(small, intent, pre.chunks, admit, missing_limit=missing_limit, guard=guard)
            self._taking_over(done.claimed)
            if done.recorded is not None:
                if done.claimed.created:
                    await self._emit("created", done.claimed.session)
                return await self._finish_write(done.recorded, done.pieces, size, started), body
            await self._small_declined(done, retry=retry)
        return None, pre.replay()

    async def _small_declined(self, done: SmallOutcome, *, retry: bool) -> None:
        """The one-hop path wrote nothing: raise its refusal, or return for the streaming path (which
        retries an expired session's id when ``retry``, as it does for its own claims)."""
        if done.claimed.created:
            await self._emit("created", done.claimed.session)
        if done.error is not None and not (retry and isinstance(done.error, SessionGone)):
            raise done.error


__all__ = ["WriteOps", "WriteResult"]
