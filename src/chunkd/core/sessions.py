"""Opening, reading and listing sessions."""

from __future__ import annotations

import uuid
from typing import Any

from chunkd.core._base import EngineBase
from chunkd.core.errors import InvalidRange, SessionConflict, SessionGone, SessionNotFound
from chunkd.core.models import Piece, Session, SessionState
from chunkd.core.principal import Principal
from chunkd.core.ranges import Range, RangeSet
from chunkd.core.store import SessionQuery

LIVE = (SessionState.OPEN, SessionState.COMMITTING, SessionState.COMMITTED)


class SessionOps(EngineBase):
    def new_session(
        self, principal: Principal, family: str, namespace: str, key: str, length: int | None, *,
        session_id: str | None = None, content_type: str = "", name: str = "",
        metadata: dict[str, str] | None = None, ttl: float | None = None, commit_on_complete: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> Session:
        """The record of a session not stored yet (for :meth:`create_session`, or for the first write
        of a session that writes create on demand). ``key`` must already be normalised."""
        self._check_length(length)
        now = self.clock()
        sid = session_id or uuid.uuid4().hex
        return Session(
            id=sid, family=family, owner=principal.key, tenant=principal.tenant, namespace=namespace,
            key=key, length=length, state=SessionState.OPEN, created_at=now, modified_at=now,
            expires_at=now + (ttl if ttl is not None else self.config.session_ttl),
            content_type=content_type, name=name, metadata=metadata or {}, storage_ref=self.storage.new_ref(sid),
            ttl=ttl, commit_on_complete=commit_on_complete, extra=extra or {},
        )

    async def create_session(
        self, principal: Principal, family: str, namespace: str, key: str, length: int | None, *,
        session_id: str | None = None, content_type: str = "", name: str = "",
        metadata: dict[str, str] | None = None, ttl: float | None = None, commit_on_complete: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> Session:
        """Open a new session for ``namespace/key``. Raises SessionConflict when a live session has the
        id, TooLarge / InvalidRange for a bad length."""
        session = self.new_session(principal, family, namespace, key, length, session_id=session_id,
                                   content_type=content_type, name=name, metadata=metadata, ttl=ttl,
                                   commit_on_complete=commit_on_complete, extra=extra)
        await self.store.create(session)
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
                await self._expire_if_due(session_id)
                try:
                    return await self.create_session(principal, family, namespace, key, length,
                                                     session_id=session_id)
                except SessionConflict:
                    continue  # another process created it a moment ago: check it like any other
            self.check_target(session, family, namespace, key, length)
            self._check_owner(session, principal)
            return session
        raise SessionConflict("the session id is being created concurrently")

    async def sessions_for_target(self, namespace: str, key: str) -> list[Session]:
        now = self.clock()
        found = await self.store.find(SessionQuery(namespace=namespace, key=key, states=LIVE, limit=1000))
        return sorted((s for s in found if s.expires_at >= now), key=lambda s: s.created_at)

    async def list_sessions(self, *, owner: str | None = None, family: str | None = None,
                            limit: int = 100, after: str = "") -> list[Session]:
        return await self.store.find(SessionQuery(owner=owner, family=family, states=LIVE, limit=limit,
                                                  after=after))

    async def pieces(self, session: Session) -> list[Piece]:
        """The session's recorded pieces, ordered by start."""
        return await self.store.pieces(session.id)

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
