"""Expiry: idle sessions end, interrupted commits finish, dead sessions are forgotten, and the byte
store's leftovers are collected. Safe to run in every process on every node at once: each change is a
compare-and-set in the metadata store."""

from __future__ import annotations

import logging

from chunkd.core._base import EngineBase
from chunkd.core.bytestore import GarbageCollecting
from chunkd.core.digests import DigestMismatch
from chunkd.core.errors import Conflict, PiecesMissing, SessionNotFound
from chunkd.core.models import Session, SessionState
from chunkd.core.store import SessionChanges, SessionQuery

log = logging.getLogger("chunkd.engine")


class ExpiryOps(EngineBase):
    async def sweep(self, limit: int = 500) -> int:
        """Expire idle sessions, finish commits that died with their process, forget old tombstones and
        collect the byte store's garbage; returns how many sessions expired (lost their bytes).

        A complete session that commits on completion is never expired: it is published instead.
        """
        now = self.clock()
        count = 0
        for session in await self.store.expired(now, limit):
            try:
                count += await self._expire(session, now)
            except Exception:  # one bad session must not stop the sweep of the others
                log.exception("could not expire session %s", session.id)
        for session in await self.store.find(SessionQuery(states=(SessionState.COMMITTING,), limit=limit)):
            if not session.composed_into and session.modified_at < now - self.config.commit_grace:
                try:
                    await self.finish_commit(session)
                except DigestMismatch:
                    pass  # refused and cancelled (finish_commit logged it)
                except Exception:
                    log.warning("could not finish the interrupted commit of %s", session.id, exc_info=True)
        for dead in await self.store.purge_dead(now - self.config.tombstone_ttl):
            await self.storage.discard(dead.storage_ref)  # again: a late writer may have left bytes
        if isinstance(self.storage, GarbageCollecting):
            try:
                await self.storage.collect_garbage(self._ref_is_live)
            except Exception:
                log.exception("byte store garbage collection failed")
        return count

    async def _ref_is_live(self, ref: str) -> bool:
        found = await self.store.find(SessionQuery(storage_ref=ref, limit=1))
        return any(s.state is SessionState.OPEN or s.state is SessionState.COMMITTING for s in found)

    async def _expire(self, session: Session, now: float) -> bool:
        """End one session whose time ran out; True when an upload that was still open lost its bytes.

        A commit interrupted by a crash (COMMITTING) is finished instead, and so is a complete session
        that commits on completion; a committed session is only forgotten (its object stays, and no
        ``expired`` event is sent for it).
        """
        if (session.state is SessionState.COMMITTING and not session.composed_into) or \
                (session.state is SessionState.OPEN and session.complete and session.commit_on_complete):
            try:
                if session.state is SessionState.OPEN:
                    session = await self.change(session, SessionChanges(state=SessionState.COMMITTING))
                await self.finish_commit(session)
                return False
            except (Conflict, SessionNotFound, DigestMismatch):  # DigestMismatch: refused and cancelled
                return False
            except PiecesMissing:  # it can never be published: open again, so expire it below
                log.warning("expiring session %s: its recorded bytes are not in the byte store", session.id)
                reread = await self.store.get(session.id)
                if reread is None or reread.state is not SessionState.OPEN:
                    return False
                session = reread
        was = session.state
        try:
            session = await self.change(session, SessionChanges(state=SessionState.EXPIRED, modified_at=now),
                                        [] if was is SessionState.COMMITTED else self.event("expired", session))
        except (Conflict, SessionNotFound):
            return False
        await self.storage.discard(session.storage_ref)
        if was is SessionState.COMMITTED:
            log.debug("forgot committed session %s (%s/%s)", session.id, session.namespace, session.key)
            return False
        log.info("expired %s session %s: %s/%s, %d of %s bytes received",
                 session.family, session.id, session.namespace, session.key, session.received,
                 "?" if session.length is None else session.length)
        await self._emit("expired", session, stored=True)
        return True

    async def _expire_if_due(self, session_id: str) -> None:
        session = await self.store.get(session_id)
        now = self.clock()
        if session is not None and session.state.alive and session.expires_at < now:
            await self._expire(session, now)
