"""Publishing sessions: commit, composing several sessions into one object, deleting sessions.

A commit moves a complete session OPEN -> COMMITTING (compare-and-set), assembles its recorded pieces
into the published object (:meth:`ByteStore.assemble`, which is idempotent), then marks it COMMITTED and
only then discards its staging area. A crash at any point leaves the session COMMITTING with every
piece still staged, and the next read of the session or the sweep finishes the commit; if the pieces
are gone (PiecesMissing) the session is opened again and the commit fails -- it is never marked
committed without its object.

A session whose family expects digests (:mod:`chunkd.core.digests`) is checked between assembly and the
COMMITTED mark: the object is read back and hashed, and a mismatch deletes the object and cancels the session
(DELETED, a ``deleted`` event with ``reason="digest_mismatch"``) before DigestMismatch is raised. Between
assembly and that verdict the object exists in the byte store but no session names it committed, so no front
end serves it; a family that uses digests must therefore publish to keys nothing else shares (tus's upload
ids) -- assembly replaces an existing object, and the refusal cannot bring it back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anyio

from chunkd.core import faults
from chunkd.core._base import EngineBase
from chunkd.core.digests import DigestMismatch, digests_of, mismatched
from chunkd.core.errors import (
    Conflict,
    InvalidRange,
    PiecesMissing,
    SessionConflict,
    SessionIncomplete,
    SessionNotFound,
)
from chunkd.core.models import ObjectInfo, Piece, Session, SessionState
from chunkd.core.principal import Principal
from chunkd.core.stats import STORAGE_ERRORS
from chunkd.core.store import SessionChanges

log = logging.getLogger("chunkd.engine")


class CommitOps(EngineBase):
    async def commit(self, session_id: str, principal: Principal) -> Session:
        """Publish a complete session atomically; committing a committed session is a no-op. Raises
        SessionIncomplete while ranges are missing, SessionConflict for a part being composed,
        PiecesMissing when its recorded bytes are not in this server's byte store (it stays open)."""
        for _ in range(20):
            session = await self.get_session(session_id, principal=principal)
            if session.state is SessionState.COMMITTED:
                return session
            if session.composed_into:
                raise SessionConflict("the session is a part being composed into another object")
            if session.length is None or session.received < session.length:
                raise SessionIncomplete("the session has missing ranges")
            try:
                if session.state is SessionState.OPEN:
                    session = await self.change(session, SessionChanges(state=SessionState.COMMITTING,
                                                                        modified_at=self.clock()))
                return await self.finish_commit(session)
            except Conflict:
                await anyio.sleep(0.01)
        raise Conflict("the session is changing too fast to commit")

    async def finish_commit(self, session: Session) -> Session:
        """Assemble a COMMITTING session's pieces and mark it COMMITTED. Safe to run twice at once and to
        run again after a crash. Raises Conflict when the session changed meanwhile."""
        assert session.length is not None
        check = self.digest_checks.get(session.family)
        expected = dict(check(session)) if check is not None else {}
        wrong: list[str] = []
        try:
            pieces = await self.store.pieces(session.id)
            _check_covers(pieces, session.length)
            await self.storage.assemble(pieces, session.namespace, session.key)
            faults.reached("after-assemble")
            if expected:
                content = self.storage.read(session.namespace, session.key, 0, session.length)
                wrong = mismatched(expected, await digests_of(content, expected))
        except Exception as exc:
            if isinstance(exc, STORAGE_ERRORS):
                self.stats.storage_error("commit")
                log.warning("byte store error publishing session %s (%s/%s): %s: %s", session.id,
                            session.namespace, session.key, type(exc).__name__, exc)
            now = await self.store.get(session.id)
            if now is not None and now.state is SessionState.COMMITTED:
                return now  # another request finished this commit first (and discarded the pieces)
            await self._reopen(session)
            raise
        except BaseException:
            await self._reopen(session)
            raise
        if wrong:
            await self._refuse(session, wrong)
            raise DigestMismatch(f"the upload's content does not match its {' and '.join(wrong)} digest; it was "
                                 "cancelled")
        session = await self.change(session, SessionChanges(state=SessionState.COMMITTED, modified_at=self.clock(),
                                                            expires_at=self._expiry(session)),
                                    self.event("committed", session))
        faults.reached("after-commit")
        log.info("committed %s session %s: %s/%s, %d bytes", session.family, session.id, session.namespace,
                 session.key, session.length)
        await self.storage.discard(session.storage_ref)  # the object keeps its bytes
        await self._emit("committed", session, stored=True)
        return session

    async def _refuse(self, session: Session, wrong: list[str]) -> None:
        """End a session whose assembled content failed its digests: no object, no staged bytes, DELETED."""
        log.warning("refused the commit of %s session %s: its content does not match the expected %s digest",
                    session.family, session.id, ", ".join(wrong))
        with anyio.CancelScope(shield=True):
            await self.storage.delete(session.namespace, session.key)
            try:
                session = await self.change(session, SessionChanges(state=SessionState.DELETED,
                                                                    modified_at=self.clock()),
                                            self.event("deleted", session, reason="digest_mismatch"))
            except (Conflict, SessionNotFound):
                return  # a racing commit of the same session refused it first
            await self.storage.discard(session.storage_ref)
        await self._emit("deleted", session, stored=True, reason="digest_mismatch")

    async def _reopen(self, session: Session) -> None:
        """A commit that failed (PathConflict: a folder has the target's name; PiecesMissing) left the
        staged bytes as they were: make the session usable again instead of leaving it COMMITTING."""
        with anyio.CancelScope(shield=True):
            try:
                await self.change(session, SessionChanges(state=SessionState.OPEN))
            except (Conflict, SessionNotFound):
                pass

    async def delete_session(self, session_id: str, principal: Principal) -> Session:
        """Cancel a session and discard its staged bytes; a committed file stays."""
        for _ in range(20):
            session = await self.get_session(session_id, principal=principal)
            try:
                session = await self.change(session, SessionChanges(state=SessionState.DELETED,
                                                                    modified_at=self.clock()),
                                            self.event("deleted", session))
            except Conflict:
                await anyio.sleep(0.01)
                continue
            await self.storage.discard(session.storage_ref)
            await self._emit("deleted", session, stored=True)
            return session
        raise Conflict("the session is changing too fast to delete")

    async def compose(self, principal: Principal, parts: list[str], namespace: str, key: str) -> ObjectInfo:
        """Publish the concatenation of the complete, live sessions ``parts`` (session ids, in order, all
        owned by ``principal``) as object ``namespace/key``, atomically (without copying bytes where the
        store assembles in place). The parts' staged bytes are consumed and the parts become committed.

        A part may be listed more than once. Repeating a compose that succeeded (every part committed
        into this same target) returns the object again. Raises SessionIncomplete when a part has
        missing bytes, SessionConflict when a part is already committed (or being composed elsewhere),
        Conflict when a part changed concurrently (nothing is consumed then), and the usual
        SessionNotFound / SessionGone / PermissionDenied of :meth:`get_session`. Each part emits a
        ``committed`` event whose detail names the object in ``composed_into`` (the part's own key is
        never published). Crash safety: parts stay COMMITTING until the object is published; the sweep
        expires parts left in that state by a crash.
        """
        target = f"{namespace}/{key}"
        unique: dict[str, Session] = {}
        for sid in parts:
            if sid not in unique:
                unique[sid] = await self.get_session(sid, principal=principal)
        if unique and all(s.state is SessionState.COMMITTED and s.composed_into == target for s in unique.values()):
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
            (s.id, s.version, SessionChanges(state=SessionState.COMMITTING, composed_into=target,
                                             modified_at=self.clock(), expires_at=self._expiry(s)))
            for s in unique.values()])
        by_id = {s.id: s for s in reserved}
        try:
            pieces: list[Piece] = []
            for sid in parts:
                part_pieces = await self.store.pieces(sid)
                _check_covers(part_pieces, by_id[sid].length or 0)
                pieces += part_pieces
            info = await self.storage.assemble(pieces, namespace, key)
        except BaseException:
            with anyio.CancelScope(shield=True):
                for s in reserved:  # the parts' bytes are still staged: give the parts back
                    try:
                        await self.change(s, SessionChanges(state=SessionState.OPEN, composed_into=""))
                    except (Conflict, SessionNotFound):
                        pass
            raise
        finished = await self._finish_parts(reserved, target)
        log.info("composed %d sessions into %s/%s, %d bytes", len(finished), namespace, key, info.size)
        for done in finished:
            await self.storage.discard(done.storage_ref)
            await self._emit("committed", done, stored=True, composed_into=target)
        return info

    async def _finish_parts(self, reserved: Sequence[Session], target: str) -> list[Session]:
        now = self.clock()
        changes = [(s.id, s.version, SessionChanges(state=SessionState.COMMITTED, modified_at=now,
                                                    expires_at=self._expiry(s))) for s in reserved]
        events = {s.id: self.event("committed", s, composed_into=target) for s in reserved}
        try:
            return await self.store.update_many(changes, [e for s in reserved for e in events[s.id]])
        except (Conflict, SessionNotFound):  # a part was swept meanwhile: finish the others one by one
            finished = []
            for sid, version, fields in changes:
                try:
                    finished.append(await self.store.update(sid, version, fields, events[sid]))
                except (Conflict, SessionNotFound):
                    continue
            return finished

    async def publish_pieces(self, session: Session, pieces: Sequence[Piece], namespace: str, key: str) -> ObjectInfo:
        """Publish a chosen list of a session's recorded pieces (any order, repeats allowed) as an object
        and end the session (its other pieces are discarded): an Azure Put Block List. Raises Conflict
        when the session changed meanwhile (nothing is published then), PiecesMissing as assemble."""
        target = f"{namespace}/{key}"
        reserved = await self.change(session, SessionChanges(state=SessionState.COMMITTING, composed_into=target,
                                                             modified_at=self.clock()))
        try:
            info = await self.storage.assemble(list(pieces), namespace, key)
        except BaseException:
            with anyio.CancelScope(shield=True):
                try:
                    await self.change(reserved, SessionChanges(state=SessionState.OPEN, composed_into=""))
                except (Conflict, SessionNotFound):
                    pass
            raise
        try:
            await self.change(reserved, SessionChanges(state=SessionState.DELETED, modified_at=self.clock()))
        except (Conflict, SessionNotFound):
            pass  # swept meanwhile: the object is published either way
        await self.storage.discard(session.storage_ref)
        return info


def _check_covers(pieces: Sequence[Piece], length: int) -> None:
    """Recorded pieces of a complete session cover [0, length) end to end; anything else means the
    metadata lost track of bytes, and publishing would expose holes."""
    pos = 0
    for p in pieces:
        if p.start != pos:
            raise PiecesMissing(f"no recorded piece holds bytes from {pos}")
        pos = p.end
    if pos != length:
        if pos > length:
            raise InvalidRange("recorded pieces extend beyond the session's length")
        raise PiecesMissing(f"no recorded piece holds bytes from {pos}")
