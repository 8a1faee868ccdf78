"""The upload-session engine: every rule about sessions, ranges, commits and expiry lives here.

Front ends call these methods in domain terms; the engine talks to a :class:`SessionStore` (metadata)
and a :class:`ByteStorage` (bytes) and never sees HTTP. A method that returns normally for a write has
made the bytes durable (when ``durable`` is on) and recorded them.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from chunkd.core.body import Body, ClientGone
from chunkd.core.errors import (
    Conflict,
    InvalidRange,
    LengthMismatch,
    ObjectNotFound,
    OffsetMismatch,
    PermissionDenied,
    RangeBusy,
    SessionConflict,
    SessionGone,
    SessionIncomplete,
    SessionNotFound,
    TooLarge,
    WriteInterrupted,
)
from chunkd.core.events import Event, EventBus
from chunkd.core.models import Listing, ObjectInfo, Resource, Session, SessionState
from chunkd.core.principal import Principal
from chunkd.core.ranges import Range, RangeSet
from chunkd.metadata.base import Claim, SessionStore
from chunkd.storage.base import ByteStorage, StagedWriter

__all__ = ["Engine", "EngineConfig", "WriteResult"]

log = logging.getLogger("chunkd.engine")


@dataclass(frozen=True)
class EngineConfig:
    """Engine tunables. Times are seconds."""

    session_ttl: float = 30 * 60  # idle lifetime of a session (Service Fabric's default)
    tombstone_ttl: float = 24 * 3600  # how long dead sessions are remembered (410 rather than 404)
    lease: float = 30.0  # a write claim not renewed for this long may be taken over
    renew_interval: float = 5.0  # writers renew their claim at least this often while bytes flow
    busy_wait: float = 30.0  # how long a write waits for another writer of an overlapping range
    durable: bool = True  # fdatasync bytes before acknowledging them
    max_size: int = 1 << 40  # largest session or object, bytes


@dataclass(frozen=True)
class WriteResult:
    session: Session
    new_bytes: int  # bytes of this request that were not already received


class Engine:
    """Sessions and objects over one metadata store and one byte store."""

    def __init__(self, store: SessionStore, storage: ByteStorage, config: EngineConfig | None = None,
                 events: EventBus | None = None, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.storage = storage
        self.config = config or EngineConfig()
        self.events = events or EventBus()
        self.clock = clock

    # -- sessions ---------------------------------------------------------------------------------
    async def create_session(
        self, principal: Principal, family: str, namespace: str, key: str, length: int | None, *,
        session_id: str | None = None, content_type: str = "", name: str = "",
        metadata: dict[str, str] | None = None, ttl: float | None = None, extra: dict[str, Any] | None = None,
    ) -> Session:
        """Open a new session for ``namespace/key``. ``key`` must already be normalised."""
        self._check_length(length)
        now = self.clock()
        sid = session_id or uuid.uuid4().hex
        ref = await self.storage.stage_create(sid)
        session = Session(
            id=sid, family=family, owner=principal.key, tenant=principal.tenant, namespace=namespace,
            key=key, length=length, state=SessionState.OPEN, created_at=now, modified_at=now,
            expires_at=now + (ttl if ttl is not None else self.config.session_ttl),
            content_type=content_type, name=name, metadata=metadata or {}, storage_ref=ref,
            extra=extra or {},
        )
        try:
            await self.store.create(session)
        except BaseException:
            await self.storage.stage_discard(ref)
            raise
        await self._emit("created", session)
        return session

    async def ensure_session(self, principal: Principal, family: str, session_id: str, namespace: str,
                             key: str, length: int) -> Session:
        """Get the live session ``session_id`` for this target, creating it if there is none.

        Raises SessionConflict when the id belongs to another target, LengthMismatch when it was
        opened with another total, PermissionDenied when another principal owns it.
        """
        for _ in range(3):
            try:
                session = await self.get_session(session_id)
            except (SessionNotFound, SessionGone):
                # an expired session the sweep has not reached yet still holds its id: expire it now
                await self._expire_if_due(session_id)
                try:
                    return await self.create_session(principal, family, namespace, key, length,
                                                     session_id=session_id)
                except SessionConflict:
                    continue  # another process created it a moment ago: check it like any other
            if session.family != family or session.namespace != namespace or session.key != key:
                raise SessionConflict("the session id is in use for another path")
            if session.length != length:
                raise LengthMismatch("the total length differs from the session's")
            self._check_owner(session, principal)
            return session
        raise SessionConflict("the session id is being created concurrently")

    async def get_session(self, session_id: str, *, principal: Principal | None = None) -> Session:
        """The live session; SessionGone for a remembered dead one, SessionNotFound otherwise."""
        session = await self.store.get(session_id)
        if session is None:
            raise SessionNotFound()
        self._check_live(session)
        if principal is not None:
            self._check_owner(session, principal)
        return session

    async def sessions_for_target(self, namespace: str, key: str) -> list[Session]:
        now = self.clock()
        return [s for s in await self.store.by_target(namespace, key) if s.expires_at >= now]

    async def list_sessions(self, *, owner: str | None = None, family: str | None = None,
                            limit: int = 100, after: str = "") -> list[Session]:
        return await self.store.list_sessions(owner=owner, family=family, limit=limit, after=after,
                                     states=(SessionState.OPEN, SessionState.COMMITTING,
                                             SessionState.COMMITTED))

    async def received(self, session: Session) -> RangeSet:
        return await self.store.ranges(session.id)

    async def missing(self, session: Session, limit: int | None = None) -> list[Range]:
        """Missing ranges ``[start, end)`` of a session with a known length, in order; with ``limit``
        only the first ones, at a cost that does not grow with the number of received ranges."""
        if session.length is None:
            raise InvalidRange("the session has no length yet")
        if session.received >= session.length:
            return []
        return await self.store.missing(session.id, session.length, limit)

    # -- writing ----------------------------------------------------------------------------------
    async def write_range(self, session_id: str, principal: Principal, start: int, end: int, body: Body,
                          *, keep_partial: bool = False, session: Session | None = None) -> WriteResult:
        """Write ``[start, end)`` of a session from ``body``, which must hold exactly ``end - start`` bytes.

        Bytes already received are read and dropped, not rewritten; a range that is entirely received
        is a successful no-op (a retry after a lost response). With ``keep_partial`` a body that ends
        early (ClientGone) keeps and records what arrived before the error is re-raised; otherwise a
        short or long body raises LengthMismatch and records nothing.
        """
        if session is None or session.id != session_id:
            session = await self.get_session(session_id, principal=principal)
        else:  # the caller read it a moment ago: check it as get_session would, without another query
            self._check_live(session)
            self._check_owner(session, principal)
        if start < 0 or end < start:
            raise InvalidRange("start must not exceed end")
        if session.length is not None and end > session.length:
            raise InvalidRange("the range ends beyond the session's length")
        if end > self.config.max_size:
            raise TooLarge(f"the upload is larger than the maximum of {self.config.max_size} bytes")
        if session.state is not SessionState.OPEN:
            if (await self.store.ranges(session.id)).contains(start, end):
                await _drain_exact(body, end - start)
                return WriteResult(session, 0)
            raise InvalidRange("the session is already committed")
        token = secrets.token_hex(16)
        claim = await self.store.claim(session.id, token, start, end, self.clock(), self.config.lease)
        return await self._write_claimed(session, token, claim, start, end, body, keep_partial)

    async def _write_claimed(self, session: Session, token: str, claim: Claim, start: int, end: int,
                             body: Body, keep_partial: bool) -> WriteResult:
        """Stream ``body`` (``[start, end)``) into the ranges ``claim`` gave ``token``, flush, record."""
        session_id = session.id
        writer: StagedWriter | None = None
        pos = start
        renewed = time.monotonic()
        todo = list(claim.to_write)

        async def keep_claim() -> None:
            # Called before anything reaches the staged file (each piece, and the final flush of the
            # writer's buffer): once our renewal is older than renew_interval we must learn whether a
            # newer request took the range over, or we could overwrite bytes it already acknowledged.
            nonlocal renewed
            if time.monotonic() - renewed > self.config.renew_interval:
                if not await self.store.renew(session_id, token, self.clock(), self.config.lease):
                    raise WriteInterrupted("another request took over this range")
                renewed = time.monotonic()

        try:
            if todo:
                try:
                    writer = await self.storage.stage_open(session.storage_ref, todo[0][0],
                                                             durable=self.config.durable)
                except FileNotFoundError as exc:  # expired, deleted or committed since it was read
                    raise SessionGone("the upload session ended while this request started") from exc
            cursor = todo[0][0] if todo else end
            async for piece in body:
                n = len(piece)
                if pos + n > end:
                    raise LengthMismatch("the body is longer than the declared range")
                if todo and writer is not None:
                    await keep_claim()
                    cursor = await _write_piece(writer, todo, piece, pos, cursor)
                pos += n
            if pos != end:
                raise LengthMismatch(f"the body has {pos - start} bytes, the range needs {end - start}")
            if writer is not None:
                await keep_claim()
                await writer.flush(self.config.durable)
            session = await self.store.record(session.id, token, claim.to_write, self.clock(),
                                              self._expiry(session))
        except ClientGone:
            if keep_partial and writer is not None and pos > start:
                try:
                    await keep_claim()
                    await writer.flush(self.config.durable)
                    kept = [(s, min(e, pos)) for s, e in claim.to_write if s < pos]
                    session = await self.store.record(session.id, token, kept, self.clock(),
                                                      self._expiry(session))
                except BaseException:
                    with anyio.CancelScope(shield=True):  # e.g. a full disk: do not block the range for a lease
                        await self.store.release(session.id, token)
                    raise
                await self._emit("progress", session)
            else:
                with anyio.CancelScope(shield=True):
                    await self.store.release(session.id, token)
            raise
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.store.release(session.id, token)
            raise
        finally:
            if writer is not None:
                await writer.close()
        if claim.busy:
            session = await self._wait_for(session, claim.busy)
        new_bytes = sum(e - s for s, e in claim.to_write)
        await self._emit("progress", session, new_bytes=new_bytes, body_bytes=end - start)
        if new_bytes and session.complete:
            await self._emit("completed", session)
        return WriteResult(session, new_bytes)

    async def _wait_for(self, session: Session, ranges: list[Range]) -> Session:
        """Wait until other writers recorded ``ranges`` (they hold claims on them)."""
        deadline = time.monotonic() + self.config.busy_wait
        delay = 0.01
        while True:
            # claims first, then ranges: a writer that records in between is seen as done, not as gone
            held = [r for r in ranges if await self.store.claimed(session.id, *r)]
            pending = [r for r in ranges if await self.store.received_within(session.id, *r) != [r]]
            if not pending:
                return await self.get_session(session.id)
            if not held:  # the other writer gave up without recording: no point waiting for busy_wait
                raise RangeBusy("another request writing part of this range failed; retry")
            if time.monotonic() > deadline:
                raise RangeBusy("another request is still writing part of this range; retry")
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.25)
            ranges = pending

    # -- sequential appends (tus) -----------------------------------------------------------------
    async def append_at(self, session_id: str, principal: Principal, offset: int, body: Body,
                        count: int | None, *, session: Session | None = None,
                        check: Callable[[Session], None] | None = None) -> Session:
        """Append ``body`` at ``offset``, which must equal the received contiguous prefix.

        ``count`` is the body's length when the client declared it; None reads until the body ends.
        A body cut short by a disconnect keeps and records what arrived, then ClientGone is re-raised;
        a body that raises anything else (a checksum mismatch from :func:`chunkd.core.checksum.verified`)
        records nothing. Raises OffsetMismatch (with the real offset), TooLarge beyond the length,
        RangeBusy while another live request appends. A request that holds the upload but has received
        no bytes for ``2 * renew_interval`` is stale and is taken over. ``check`` sees the session as
        it was when the range was claimed, before any byte is written, and may raise to refuse the
        append (a front end's own rules). ``session``, the caller's fresh read of it, is needed only
        when ``count`` is None.

        With ``count`` given this is the small-chunk hot path: two metadata transactions (claim,
        record) and one fdatasync, the session read in the first of them.
        """
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
        now = self.clock()
        stale_before = now + self.config.lease - 2 * self.config.renew_interval
        appending = await self.store.claim_append(session_id, token, offset, end, now, self.config.lease,
                                                  max(now, stale_before))
        session, claim = appending.session, appending.claim
        try:
            self._check_owner(session, principal)  # first: nothing else may be told to another principal
            self._check_live(session)
            if check is not None:
                check(session)
            if offset != appending.prefix:
                raise OffsetMismatch(f"the upload is at offset {appending.prefix}, not {offset}",
                                     offset=appending.prefix)
            limit = session.length if session.length is not None else self.config.max_size
            if end > limit:
                raise TooLarge(f"{end} bytes exceed the upload's length of {limit}")
            if claim is not None and claim.busy:
                raise RangeBusy("another request is still appending to this upload")
        except BaseException:
            if claim is not None and claim.to_write:
                with anyio.CancelScope(shield=True):
                    await self.store.release(session.id, token)
            raise
        try:
            if claim is None:  # not open (committed, ...): write_range has the answer for each case
                return (await self.write_range(session.id, principal, offset, end, _counted(body, count),
                                               keep_partial=True)).session
            return (await self._write_claimed(session, token, claim, offset, end, _counted(body, count),
                                              keep_partial=True)).session
        except _BodyEnded:
            session = await self.get_session(session.id)
            if session.complete and session.received > offset:
                await self._emit("completed", session)
            return session

    async def drop_stale_claims(self, session_id: str, start: int, end: int, *, wait: float = 0.0) -> bool:
        """Make way for a new write of ``[start, end)``: drop claims on it that were not renewed for
        ``2 * renew_interval`` (their writer died with its process, or its client stalled). With ``wait``,
        keep trying for up to that many seconds while live claims overlap (a claim a dead process left a
        moment ago becomes stale within ``2 * renew_interval``). Returns True when live claims still
        overlap the range.

        A live writer renews its claim before writing once its renewal is ``renew_interval`` old, so a
        stalled writer that wakes up finds its claim gone and stops (WriteInterrupted) before it could
        write into the range. Costs one read when nobody holds the range.
        """
        deadline = time.monotonic() + wait
        delay = 0.05
        while True:
            if not await self.store.claimed(session_id, start, end):
                return False  # the common case: no write transaction, no WAL fsync
            # a throw-away probe claim whose "now" is shifted so that the store's drop-expired-claims
            # step drops exactly the stale ones; released at once
            probe = secrets.token_hex(16)
            shifted = self.clock() + self.config.lease - 2 * self.config.renew_interval
            claim = await self.store.claim(session_id, probe, start, end, shifted, 0.0)
            await self.store.release(session_id, probe)
            if not claim.busy:
                return False
            if time.monotonic() >= deadline:
                return True
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def set_length(self, session_id: str, principal: Principal, length: int) -> Session:
        """Fix the total length of a session opened without one (tus deferred length). Setting the same
        length again is a no-op; another length raises LengthMismatch."""
        self._check_length(length)
        for _ in range(20):
            session = await self.get_session(session_id, principal=principal)
            if session.length is not None:
                if session.length != length:
                    raise LengthMismatch(f"the upload's length is already {session.length}")
                return session
            if length < session.received:
                raise LengthMismatch(f"{session.received} bytes were already received")
            try:
                session = await self.store.update(session.id, session.version, length=length,
                                                  modified_at=self.clock())
            except Conflict:
                await anyio.sleep(0.01)
                continue
            if session.complete:
                await self._emit("completed", session)
            return session
        raise Conflict("the session is changing too fast to set its length")

    async def concatenate(self, session_id: str, principal: Principal, parts: list[str]) -> Session:
        """Finish the open session ``session_id`` as the concatenation of the complete sessions ``parts``
        (tus final upload): their bytes become its published object through :meth:`compose` (no copy on
        local storage), and the session becomes committed with ``received == length``.

        Safe to race from several processes: a loser whose compose fails because the parts are already
        consumed finds the object in place and only marks the session (or returns it as it is).
        """
        session = await self.get_session(session_id, principal=principal)
        if session.state is not SessionState.OPEN:
            return session
        try:
            await self.compose(principal, parts, session.namespace, session.key)
        except (SessionGone, SessionNotFound, SessionIncomplete, Conflict, InvalidRange):
            info = await self.storage.stat(session.namespace, session.key)
            if info is None or info.size != session.length:
                raise
        for _ in range(20):
            session = await self.get_session(session_id)
            if session.state is not SessionState.OPEN:
                return session
            try:
                session = await self.store.update(session.id, session.version, state=SessionState.COMMITTED,
                                                  received=session.length, modified_at=self.clock(),
                                                  expires_at=self._expiry(session))
            except Conflict:
                await anyio.sleep(0.01)
                continue
            await self.storage.stage_discard(session.storage_ref)
            await self._emit("completed", session)
            await self._emit("committed", session)
            return session
        raise Conflict("the session is changing too fast to finish")

    # -- composing objects from parts ---------------------------------------------------------------
    async def compose(self, principal: Principal, parts: list[str], namespace: str, key: str) -> ObjectInfo:
        """Publish the concatenation of the complete, live sessions ``parts`` (session ids, in order, all
        owned by ``principal``) as object ``namespace/key``, atomically, without copying bytes on local
        storage. The parts' staged bytes are consumed and the parts become committed.

        A part may be listed more than once. Repeating a compose that succeeded (every part committed
        into this same target) returns the object again. Raises SessionIncomplete when a part has
        missing bytes, SessionConflict when a part is already committed (or being composed elsewhere),
        Conflict when a part changed concurrently (nothing is consumed then), and the usual
        SessionNotFound / SessionGone / PermissionDenied of :meth:`get_session`. Each part emits a
        ``committed`` event whose detail names the object in ``composed_into`` (the part's own key is
        never published). Crash safety: parts stay COMMITTING until the object is published; the sweep
        expires parts left in that state by a crash.
        """
        target = [namespace, key]
        unique: dict[str, Session] = {}
        for sid in parts:
            if sid not in unique:
                unique[sid] = await self.get_session(sid, principal=principal)
        if unique and all(s.state is SessionState.COMMITTED and s.extra.get("composed_into") == target
                          for s in unique.values()):
            info = await self.storage.stat(namespace, key)
            if info is not None:
                return info  # a retry after a lost response
        for s in unique.values():
            if s.state is not SessionState.OPEN:
                raise SessionConflict(f"part {s.id} is already committed")
            if not s.complete:
                raise SessionIncomplete(f"part {s.id} has missing ranges")
        # Reserve every part with a compare-and-set so that no write, commit, delete or other compose of a
        # part can run meanwhile; the reservation names the target so that a retry can be recognised.
        # All parts in one transaction (one commit, not one per part), all or nothing.
        reserved = await self.store.update_many([
            (s.id, s.version, {"state": SessionState.COMMITTING, "extra": {**s.extra, "composed_into": target},
                               "modified_at": self.clock(), "expires_at": self._expiry(s)})
            for s in unique.values()])
        unique = {s.id: s for s in reserved}
        try:
            info = await self.storage.publish_composite(
                [(unique[sid].storage_ref, unique[sid].length or 0) for sid in parts], namespace, key)
        except BaseException:
            with anyio.CancelScope(shield=True):
                for s in reserved:  # the storage left the parts' bytes in place: give the parts back
                    extra = {k: v for k, v in s.extra.items() if k != "composed_into"}
                    try:
                        await self.store.update(s.id, s.version, state=SessionState.OPEN, extra=extra)
                    except (Conflict, SessionNotFound):
                        pass
            raise
        now = self.clock()
        changes = [(s.id, s.version, {"state": SessionState.COMMITTED, "modified_at": now,
                                      "expires_at": self._expiry(s)}) for s in reserved]
        try:
            finished = await self.store.update_many(changes)
        except (Conflict, SessionNotFound):  # a part was swept meanwhile: finish the others one by one
            finished = []
            for sid, version, fields in changes:
                try:
                    finished.append(await self.store.update(sid, version, **fields))
                except (Conflict, SessionNotFound):
                    continue
        for done in finished:
            await self._emit("committed", done, composed_into=f"{namespace}/{key}")
        return info

    # -- commit / delete --------------------------------------------------------------------------
    async def commit(self, session_id: str, principal: Principal) -> Session:
        """Publish a complete session atomically; committing a committed session is a no-op."""
        for _ in range(20):
            session = await self.get_session(session_id, principal=principal)
            if session.state is SessionState.COMMITTED:
                return session
            if "composed_into" in session.extra:
                raise SessionConflict("the session is a part being composed into another object")
            if session.length is None or session.received < session.length:
                raise SessionIncomplete("the session has missing ranges")
            try:
                if session.state is SessionState.OPEN:
                    session = await self.store.update(session.id, session.version,
                                                      state=SessionState.COMMITTING)
                return await self._finish_commit(session)
            except Conflict:
                await anyio.sleep(0.01)
        raise Conflict("the session is changing too fast to commit")

    async def _finish_commit(self, session: Session) -> Session:
        assert session.length is not None
        try:
            await self.storage.publish(session.storage_ref, session.namespace, session.key, session.length)
        except FileNotFoundError:
            pass  # another process published it first
        except BaseException:
            # e.g. PathConflict (a folder has the target's name): the staged bytes are untouched, so make
            # the session usable again instead of leaving it stuck in COMMITTING
            with anyio.CancelScope(shield=True):
                try:
                    await self.store.update(session.id, session.version, state=SessionState.OPEN)
                except (Conflict, SessionNotFound):
                    pass
            raise
        now = self.clock()
        session = await self.store.update(session.id, session.version, state=SessionState.COMMITTED,
                                          modified_at=now, expires_at=self._expiry(session))
        await self._emit("committed", session)
        return session

    async def delete_session(self, session_id: str, principal: Principal) -> Session:
        """Cancel a session and discard its staged bytes; a committed file stays."""
        for _ in range(20):
            session = await self.get_session(session_id, principal=principal)
            try:
                session = await self.store.update(session.id, session.version, state=SessionState.DELETED,
                                                  modified_at=self.clock())
            except Conflict:
                await anyio.sleep(0.01)
                continue
            await self.storage.stage_discard(session.storage_ref)
            await self._emit("deleted", session)
            return session
        raise Conflict("the session is changing too fast to delete")

    async def sweep(self, limit: int = 500) -> int:
        """Expire idle sessions and forget old tombstones; returns how many sessions expired.

        Safe to run in every process at once: each expiry is a compare-and-set.
        """
        now = self.clock()
        count = 0
        for session in await self.store.expired(now, limit):
            try:
                count += await self._expire(session, now)
            except Exception:  # one bad session must not stop the sweep of the others
                log.exception("could not expire session %s", session.id)
        await self.store.purge_dead(now - self.config.tombstone_ttl)
        try:
            await self.storage.collect_garbage()
        except Exception:
            log.exception("byte storage garbage collection failed")
        return count

    async def _expire(self, session: Session, now: float) -> bool:
        """Expire one session whose time ran out; True when an upload that was still open lost its bytes.

        A commit interrupted by a crash (COMMITTING) is finished instead; a committed session is only
        forgotten (its published object stays, and no ``expired`` event is sent for it).
        """
        if session.state is SessionState.COMMITTING and "composed_into" not in session.extra:
            try:
                await self._finish_commit(session)
            except (Conflict, SessionNotFound):
                pass
            return False  # if publishing failed the session is open again and a later sweep expires it
        was = session.state
        try:
            session = await self.store.update(session.id, session.version, state=SessionState.EXPIRED,
                                              modified_at=now)
        except (Conflict, SessionNotFound):
            return False
        await self.storage.stage_discard(session.storage_ref)
        if was is SessionState.COMMITTED:
            return False
        await self._emit("expired", session)
        return True

    async def _expire_if_due(self, session_id: str) -> None:
        session = await self.store.get(session_id)
        now = self.clock()
        if session is not None and session.state.alive and session.expires_at < now:
            await self._expire(session, now)

    # -- published objects ------------------------------------------------------------------------
    async def put_object(self, namespace: str, key: str, body: Body) -> ObjectInfo:
        """Store a whole object from a body, durably, replacing any existing one atomically."""
        ref = await self.storage.stage_create("put")
        try:
            writer = await self.storage.stage_open(ref, 0, durable=self.config.durable)
            size = 0
            try:
                async for piece in body:
                    size += len(piece)
                    if size > self.config.max_size:
                        raise TooLarge()
                    await writer.write(piece)
                await writer.flush(self.config.durable)
            finally:
                await writer.close()
            return await self.storage.publish(ref, namespace, key, size)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.storage.stage_discard(ref)
            raise

    async def stat_object(self, namespace: str, key: str) -> ObjectInfo:
        info = await self.storage.stat(namespace, key)
        if info is None:
            raise ObjectNotFound()
        return info

    def read_object(self, namespace: str, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        return self.storage.read(namespace, key, start, end)

    async def list_folder(self, namespace: str, prefix: str) -> Listing:
        return await self.storage.list_folder(namespace, prefix)

    async def is_folder(self, namespace: str, key: str) -> bool:
        return await self.storage.is_folder(namespace, key)

    async def walk(self, namespace: str, prefix: str) -> list[ObjectInfo]:
        return await self.storage.walk(namespace, prefix)

    async def delete_object(self, namespace: str, key: str) -> bool:
        return await self.storage.delete(namespace, key)

    async def copy_object(self, namespace: str, src: str, dst: str, skip: frozenset[str] = frozenset()) -> int:
        try:
            return await self.storage.copy(namespace, src, dst, skip)
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"{src} does not exist") from exc

    async def usage(self) -> dict[str, int]:
        return await self.storage.usage()

    # -- resources (protocol objects the core stores but does not interpret) -----------------------
    async def create_resource(self, kind: str, resource_id: str, principal: Principal, data: dict[str, Any],
                              *, parent: str = "") -> Resource:
        now = self.clock()
        return await self.store.put_resource(Resource(kind=kind, id=resource_id, tenant=principal.tenant,
                                                      owner=principal.key, data=data, created_at=now,
                                                      modified_at=now, parent=parent))

    async def get_resource(self, kind: str, resource_id: str) -> Resource | None:
        return await self.store.get_resource(kind, resource_id)

    async def update_resource(self, resource: Resource, data: dict[str, Any]) -> Resource:
        """Compare-and-set against ``resource.version``; raises Conflict if it changed meanwhile."""
        return await self.store.update_resource(resource.kind, resource.id, resource.version, data, self.clock())

    async def list_resources(self, kind: str, *, tenant: str | None = None, parent: str | None = None,
                             owner: str | None = None, limit: int = 1000, after: str = "") -> list[Resource]:
        return await self.store.list_resources(kind, tenant=tenant, parent=parent, owner=owner, limit=limit,
                                               after=after)

    async def delete_resource(self, kind: str, resource_id: str) -> bool:
        return await self.store.delete_resource(kind, resource_id)

    async def delete_resources(self, kind: str, resource_ids: list[str]) -> int:
        return await self.store.delete_resources(kind, resource_ids)

    # -- helpers ----------------------------------------------------------------------------------
    def _expiry(self, session: Session) -> float:
        ttl = float(session.extra.get("ttl", self.config.session_ttl))
        return self.clock() + ttl

    def _check_length(self, length: int | None) -> None:
        if length is not None and length < 0:
            raise InvalidRange("length must not be negative")
        if length is not None and length > self.config.max_size:
            raise TooLarge(f"the upload is larger than the maximum of {self.config.max_size} bytes")

    def _check_live(self, session: Session) -> None:
        if not session.state.alive:
            raise SessionGone()
        if session.expires_at < self.clock():
            raise SessionGone("the upload session expired")

    @staticmethod
    def _check_owner(session: Session, principal: Principal) -> None:
        if session.owner != principal.key:
            raise PermissionDenied("the session belongs to another principal")

    async def _emit(self, kind: str, session: Session, **detail: object) -> None:
        await self.events.emit(Event(kind, session, self.clock(), dict(detail)))


async def _write_piece(writer: StagedWriter, todo: list[Range], piece: bytes, pos: int, cursor: int) -> int:
    """Write the parts of ``piece`` (at ``pos``) that fall into the ``todo`` ranges; returns the writer's
    position. ``todo`` is sorted; ranges wholly before ``pos`` are dropped as we pass them."""
    end = pos + len(piece)
    view = memoryview(piece)
    while todo and todo[0][1] <= pos:
        todo.pop(0)
    for s, e in todo:
        if s >= end:
            break
        a, b = max(s, pos), min(e, end)
        if a >= b:
            continue
        if a != cursor:
            await writer.seek(a)
        await writer.write(view[a - pos: b - pos] if (a, b) != (pos, end) else piece)
        cursor = b
    return cursor


async def _drain_exact(body: Body, expected: int) -> None:
    got = 0
    async for piece in body:
        got += len(piece)
        if got > expected:
            raise LengthMismatch("the body is longer than the declared range")
    if got != expected:
        raise LengthMismatch(f"the body has {got} bytes, the range needs {expected}")


class _BodyEnded(ClientGone):
    """A body of undeclared length ended normally (append_at keeps what arrived)."""


def _counted(body: Body, count: int | None) -> Body:
    """A body of declared length as it is; one of undeclared length ends with _BodyEnded."""
    return body if count is not None else _ended(body)


async def _ended(body: Body) -> Body:
    async for piece in body:
        yield piece
    raise _BodyEnded()
