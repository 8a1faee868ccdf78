"""tus uploads: creation (normal, partial, final, deferred length), appending with tus's rules, setting a
deferred length, concatenation of partial uploads into a final one, finishing and termination.

An upload is a session of family ``tus`` whose id and key are the upload id; a finished normal upload is
published as object ``tus/<id>``. What tus keeps beside the session (concatenation kind, the parts of a
final, the raw ``Upload-Metadata`` pairs) is a typed record (:mod:`chunkd.services.tus_records`).

Partial uploads stay open once complete until a final upload consumes them (:meth:`TusUploads.concatenate`,
which composes without copying where the byte store can). A final declared before its parts are complete
is linked to each unfinished part by a ``PendingFinal`` resource in the metadata store, so that whichever
request completes the last part -- in any process -- finishes it; reads of the final
(:meth:`TusUploads.get`) finish it lazily too.

Errors: ``TusFault`` for tus's own refusals (a tusd ``ERR_`` code and a message; the front end maps codes
to statuses), core errors (:mod:`chunkd.core.errors`) otherwise. Every method either did what it says or
changed nothing, except that an append keeps the bytes that arrived before a disconnect.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

import anyio

from chunkd.core import errors
from chunkd.core.body import Body
from chunkd.core.engine import Engine
from chunkd.core.models import ObjectInfo, Session, SessionState
from chunkd.core.principal import Principal
from chunkd.core.store import SessionChanges
from chunkd.services.tus_records import (
    FAMILY,
    NAMESPACE,
    PENDING_FINAL,
    Concat,
    FaultCode,
    NewUpload,
    PendingFinal,
    TusFault,
    Upload,
    UploadFields,
)

__all__ = ["TusUploads"]

log = logging.getLogger("chunkd.tus")


class TusUploads:
    """The tus operations over an engine. ``max_size`` is the server's ``Tus-Max-Size``; ``expiration``
    the idle lifetime of an upload in seconds."""

    def __init__(self, engine: Engine, *, max_size: int = 1 << 40, expiration: float = 86400.0) -> None:
        self.engine = engine
        self.max_size = max_size
        self.expiration = expiration
        # an upload that announced its whole content's digest (the IETF draft's Repr-Digest) is checked at commit
        engine.expect_digests(FAMILY, lambda session: UploadFields.from_extra(session.extra).expected_digests)

    # -- creation ---------------------------------------------------------------------------------
    async def create(self, principal: Principal, new: NewUpload, body: Body | None = None,
                     count: int | None = None) -> Upload:
        """Create an upload; with ``body`` (``count`` bytes when declared) its first bytes too
        (creation-with-upload). A final is linked to its parts and finished at once if they are complete.

        Raises TusFault INVALID_CONCAT for parts that are not open partial uploads of known length,
        MAX_SIZE_EXCEEDED, UPLOAD_SIZE_EXCEEDED for a declared body longer than the length, and the parts'
        SessionNotFound / SessionGone / PermissionDenied. A body that fails (checksum mismatch, disconnect)
        leaves the upload created with what was stored of it: the client continues with PATCH.
        """
        length = await self._final_length(principal, new.parts) if new.concat is Concat.FINAL else new.length
        if length is not None:
            self._check_max(length)
        if body is not None and count is not None and length is not None and count > length:
            raise TusFault(FaultCode.UPLOAD_SIZE_EXCEEDED, "the body is longer than Upload-Length")
        upload_id = secrets.token_hex(16)
        fields = UploadFields(new.concat, new.parts, new.metadata, new.declared_length, new.repr_digest)
        text = dict(new.text)
        session = await self.engine.create_session(
            principal, FAMILY, NAMESPACE, upload_id, length, session_id=upload_id,
            content_type=text.get("filetype", text.get("type", "")), name=text.get("filename", text.get("name", "")),
            metadata=text, ttl=self.expiration, commit_on_complete=new.concat is Concat.NONE,
            extra=fields.to_extra())
        if new.concat is Concat.FINAL:
            try:
                session = await self._start_final(session, principal)
            except BaseException:
                # the client gets no Location for a final that failed to start: leave no such session behind
                with anyio.CancelScope(shield=True):
                    await self.engine.delete_session(session.id, principal)
                raise
        elif body is not None and (count is None or count > 0):
            session = await self._append(session.id, principal, 0, body, count, session=session, creating=True)
        elif session.complete:
            session = await self._finished(session, principal)
        return Upload.of(session)

    async def _final_length(self, principal: Principal, part_ids: tuple[str, ...]) -> int:
        parts = [await self.engine.get_session(p, principal=principal) for p in part_ids]
        for part in parts:
            if part.family != FAMILY or UploadFields.concat_of(part.extra) is not Concat.PARTIAL:
                raise TusFault(FaultCode.INVALID_CONCAT, f"upload {part.id} is not a partial upload")
            if part.length is None:
                raise TusFault(FaultCode.INVALID_CONCAT, f"partial upload {part.id} has no length yet")
            if part.state is not SessionState.OPEN:
                raise TusFault(FaultCode.INVALID_CONCAT, f"partial upload {part.id} was already concatenated")
        return sum(p.length or 0 for p in parts)

    # -- appending --------------------------------------------------------------------------------
    async def append(self, upload_id: str, principal: Principal, offset: int, body: Body, count: int | None,
                     *, length: int | None = None, rules: Callable[[Session], None] | None = None) -> Upload:
        """Append ``body`` at ``offset`` (``count`` bytes when declared, else until it ends), declaring the
        deferred ``length`` first when given. The append that completes an upload finishes it.

        Raises OffsetMismatch (with the real offset), TusFault MODIFY_FINAL, MAX_SIZE_EXCEEDED (the
        length, or a deferred upload growing beyond the maximum), LengthMismatch for a length that differs
        from the one set, and the engine's append errors. An empty append at the end of a complete upload
        finishes it (a retry after a lost response). With ``count`` and no ``length`` this is the engine's
        hot path: two metadata transactions and one data flush. ``rules`` are the caller's own refusals,
        checked with tus's on the session the append claims (the IETF draft's service uses them).
        """
        check = self._rules(offset, count, rules)
        if length is None and count is not None:
            # the common case: the engine reads, checks and claims in one store transaction
            return Upload.of(await self._append(upload_id, principal, offset, body, count, check=check))
        session = await self.engine.get_session(upload_id, principal=principal)
        check(session)
        if length is not None:
            self._check_max(length)
            if session.length is None:
                session = await self.set_length(upload_id, principal, length)
            elif session.length != length:
                raise errors.LengthMismatch("the upload's length is already set")
        if session.complete and offset == session.received and not count:
            return Upload.of(await self._finished(session, principal))
        if session.length is None and count is None:  # chunked body of a deferred upload: enforce the max
            body = _capped(body, self.max_size - offset)
        return Upload.of(await self._append(upload_id, principal, offset, body, count, session=session, check=check))

    def _check_max(self, length: int) -> None:
        if length > self.max_size:
            raise TusFault(FaultCode.MAX_SIZE_EXCEEDED, f"the upload is larger than the maximum of {self.max_size} "
                                                        "bytes")

    def _rules(self, offset: int, count: int | None,
               more: Callable[[Session], None] | None = None) -> Callable[[Session], None]:
        """tus's own refusals of an append (and ``more``), checked on the session the append claims."""
        def check(session: Session) -> None:
            if more is not None:
                more(session)
            if UploadFields.concat_of(session.extra) is Concat.FINAL:
                raise TusFault(FaultCode.MODIFY_FINAL, "a final upload cannot be modified")
            if session.length is None and count is not None and offset + count > self.max_size:
                raise TusFault(FaultCode.MAX_SIZE_EXCEEDED,
                               f"the upload would grow beyond the maximum of {self.max_size} bytes")
        return check

    async def _append(self, upload_id: str, principal: Principal, offset: int, body: Body, count: int | None,
                      *, session: Session | None = None, check: Callable[[Session], None] | None = None,
                      creating: bool = False) -> Session:
        try:
            session = await self.engine.append_at(upload_id, principal, offset, body, count, session=session,
                                                  check=check)
        except errors.ChunkdError:
            if not creating:
                raise
            # creation-with-upload: the upload exists now, so report the offset that was really stored
            # (a bad checksum stored nothing); the client continues from there
            return await self.engine.get_session(upload_id)
        if session.complete:
            session = await self._finished(session, principal)
        return session

    async def set_length(self, upload_id: str, principal: Principal, length: int) -> Session:
        """Fix the total length of an upload created without one. Setting the same length again is a
        no-op; another length raises LengthMismatch, as does one shorter than what was received. An
        upload this completes is published when it commits on completion (a normal upload). Raises
        TusFault MAX_SIZE_EXCEEDED, TooLarge beyond the engine's maximum."""
        self._check_max(length)
        if length < 0:
            raise errors.InvalidRange("length must not be negative")
        if length > self.engine.config.max_size:
            raise errors.TooLarge(f"the upload is larger than the maximum of {self.engine.config.max_size} bytes")
        for _ in range(20):
            session = await self.engine.get_session(upload_id, principal=principal)
            if session.length is not None:
                if session.length != length:
                    raise errors.LengthMismatch(f"the upload's length is already {session.length}")
                return session
            if length < session.received:
                raise errors.LengthMismatch(f"{session.received} bytes were already received")
            done = session.received >= length
            state = SessionState.COMMITTING if done and session.commit_on_complete else None
            try:
                session = await self.engine.change(session, SessionChanges(length=length, state=state,
                                                                           modified_at=self.engine.clock()),
                                                   self.engine.event("completed", session) if done else [])
            except errors.Conflict:
                await anyio.sleep(0.01)
                continue
            if session.complete:
                await self.engine.emit("completed", session, stored=True)
            if session.state is SessionState.COMMITTING:
                session = await self.engine.finish_commit(session)
            return session
        raise errors.Conflict("the upload is changing too fast to set its length")

    # -- reading, terminating ---------------------------------------------------------------------
    async def get(self, upload_id: str, principal: Principal) -> Upload:
        """The upload as HEAD and GET report it: a final whose parts are complete is finished first, and
        so is a complete upload whose commit a crash interrupted."""
        session = await self.engine.get_session(upload_id, principal=principal)
        if session.complete and session.state is not SessionState.COMMITTED and session.commit_on_complete:
            return Upload.of(await self._finished(session, principal))
        return Upload.of(await self._maybe_finish_final(session, principal))

    async def download(self, upload_id: str, principal: Principal) -> tuple[Upload, ObjectInfo]:
        """A finished upload and its published object; TusFault NOT_FINISHED before."""
        upload = await self.get(upload_id, principal)
        if not upload.finished:
            raise TusFault(FaultCode.NOT_FINISHED, "the upload is not finished; HEAD reports its offset")
        return upload, await self.engine.stat_object(NAMESPACE, upload.session.key)

    async def terminate(self, upload_id: str, principal: Principal) -> None:
        """End an upload, finished or not, and delete its object. SessionGone when it is already gone."""
        session = await self.engine.delete_session(upload_id, principal)
        await self.engine.delete_object(NAMESPACE, session.key)

    # -- finishing and concatenation --------------------------------------------------------------
    async def _finished(self, session: Session, principal: Principal) -> Session:
        """A complete upload: publish a normal one; let a partial one complete its pending finals."""
        if UploadFields.concat_of(session.extra) is Concat.PARTIAL:
            for resource in await self.engine.list_resources(PENDING_FINAL, parent=session.id):
                link = PendingFinal.from_resource(resource)
                try:
                    final = await self.engine.get_session(link.final, principal=principal)
                    await self._maybe_finish_final(final, principal)
                except (errors.NotFound, errors.SessionGone, errors.PermissionDenied):
                    await self.engine.delete_resource(PENDING_FINAL, link.resource_id)
                except errors.ChunkdError:
                    # this part's own bytes are recorded: don't fail its append; reads of the final retry
                    log.warning("could not finish final upload %s yet", link.final, exc_info=True)
            return session
        if session.state in (SessionState.OPEN, SessionState.COMMITTING):
            # COMMITTING here is a commit another request is running or one that died with its process
            # moments ago (inside the engine's grace): finishing it again is safe, and a reader must not
            # see a complete upload it cannot download
            session = await self.engine.commit(session.id, principal)
        return session

    async def _start_final(self, final: Session, principal: Principal) -> Session:
        """Link a new final upload to its unfinished parts, then try to finish it at once."""
        for part_id in dict.fromkeys(UploadFields.from_extra(final.extra).parts):  # a part may be named twice
            part = await self.engine.get_session(part_id, principal=principal)
            if not part.complete:
                link = PendingFinal(final=final.id, part=part_id)
                await self.engine.create_resource(PENDING_FINAL, link.resource_id, principal, link.to_data(),
                                                  parent=link.part)
        # a part that completed between the checks above and the links is caught here (or by a read)
        return await self._maybe_finish_final(final, principal)

    async def _maybe_finish_final(self, session: Session, principal: Principal) -> Session:
        fields = UploadFields.from_extra(session.extra)
        if fields.concat is not Concat.FINAL or session.state is not SessionState.OPEN:
            return session
        try:
            for part_id in fields.parts:
                part = await self.engine.get_session(part_id, principal=principal)
                if not part.complete:
                    return session
        except (errors.NotFound, errors.SessionGone):
            return session  # a part expired or was terminated: the final can never finish
        try:
            session = await self.concatenate(session.id, principal, list(fields.parts))
        except errors.Conflict:
            # another request is composing it right now (it will finish it), or another final consumed a
            # shared part (this one can never finish); either way the caller's own request succeeded, and
            # reads retry the composition lazily
            return session
        for part_id in dict.fromkeys(fields.parts):
            await self.engine.delete_resource(PENDING_FINAL, PendingFinal(final=session.id, part=part_id).resource_id)
        return session

    async def concatenate(self, session_id: str, principal: Principal, parts: list[str]) -> Session:
        """Finish the open session ``session_id`` as the concatenation of the complete sessions ``parts``
        (a tus final upload): their bytes become its published object through :meth:`Engine.compose` (no
        copy where the store assembles in place), and the session becomes committed with
        ``received == length``. A session that is not open is returned as it is.

        Safe to race from several processes: a loser whose compose fails because the parts are already
        consumed finds the object in place and only marks the session (or returns it as it is). Raises
        the compose's errors otherwise, Conflict when the session keeps changing.
        """
        session = await self.engine.get_session(session_id, principal=principal)
        if session.state is not SessionState.OPEN:
            return session
        try:
            await self.engine.compose(principal, parts, session.namespace, session.key)
        except (errors.SessionGone, errors.SessionNotFound, errors.SessionIncomplete, errors.Conflict,
                errors.InvalidRange):
            try:  # another process composed it first?
                size: int | None = (await self.engine.stat_object(session.namespace, session.key)).size
            except errors.ObjectNotFound:
                size = None
            if size != session.length:
                raise
        for _ in range(20):
            session = await self.engine.get_session(session_id)
            if session.state is not SessionState.OPEN:
                return session
            try:
                session = await self.engine.change(session, SessionChanges(
                    state=SessionState.COMMITTED, received=session.length, modified_at=self.engine.clock(),
                    expires_at=self.engine.expiry_for(session)),
                    [*self.engine.event("completed", session), *self.engine.event("committed", session)])
            except errors.Conflict:
                await anyio.sleep(0.01)
                continue
            await self.engine.emit("completed", session, stored=True)
            await self.engine.emit("committed", session, stored=True)
            return session
        raise errors.Conflict("the session is changing too fast to finish")


async def _capped(body: Body, limit: int) -> Body:
    """``body``, raising TooLarge (nothing is recorded then) once it exceeds ``limit`` bytes."""
    total = 0
    async for piece in body:
        total += len(piece)
        if total > limit:
            raise errors.TooLarge(f"the upload would grow beyond the maximum of {limit} more bytes")
        yield piece
