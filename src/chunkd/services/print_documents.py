"""A print job's documents and their upload sessions.

A document's bytes are one engine session per upload (family ``graph-print``, :class:`UploadFields` beside
it), committed on completion as object ``print/<tenant>/<documentId>``; the document is then marked
uploaded (:meth:`PrintDocuments.finish`). If a process dies between the last byte and that mark, the next
look at the document finishes it (:meth:`PrintDocuments.reconcile`). One principal at a time holds a
document's session. Methods raise :class:`PrintFault` for what the caller asked wrongly and core errors
(Conflict after too many lost races, the write path's errors) otherwise; none carries an HTTP status.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

import anyio

from chunkd.core import errors
from chunkd.core.body import Body
from chunkd.core.engine import Engine
from chunkd.core.models import ObjectInfo, Session, SessionState
from chunkd.core.principal import Principal
from chunkd.core.ranges import Range
from chunkd.services.print_records import (
    FAMILY,
    KIND_DOCUMENT,
    NAMESPACE,
    Document,
    Job,
    PrintFault,
    PrintFaultCode,
    UploadFields,
    principal_data,
)

# Compare-and-set retries on a document before giving up with Conflict.
RETRIES = 50
_ENDED = "the upload session does not exist or has ended"


@dataclass(frozen=True)
class Written:
    """A segment written: the session after it, the first missing ranges when asked for, and the document
    when this segment completed the upload (it is then committed and the document uploaded)."""

    session: Session
    missing: list[Range] | None = None
    document: Document | None = None


def _live(session: Session, now: float) -> None:
    """PrintFault SESSION_NOT_FOUND unless ``session`` is a print upload before its deadline."""
    if session.family != FAMILY:
        raise PrintFault(PrintFaultCode.SESSION_NOT_FOUND, "the upload session does not exist")
    if UploadFields.from_extra(session.extra).deadline < now:
        raise PrintFault(PrintFaultCode.SESSION_NOT_FOUND, "the upload session expired")


class PrintDocuments:
    """Documents and upload sessions over the engine. ``missing_limit`` bounds the missing ranges reported
    (the first gaps only, as OneDrive's sessions do), which keeps that query O(1) in received ranges."""

    def __init__(self, engine: Engine, missing_limit: int) -> None:
        self.engine = engine
        self.missing_limit = missing_limit

    # -- documents ------------------------------------------------------------------------------------
    async def _load(self, document_id: str) -> Document:
        res = await self.engine.get_resource(KIND_DOCUMENT, document_id)
        if res is None:
            raise PrintFault(PrintFaultCode.NOT_FOUND, "the print document was not found")
        return Document.from_resource(res)

    async def _replace(self, current: Document, changed: Document) -> Document:
        """Compare-and-set (Conflict when it moved)."""
        res = await self.engine.update_resource(current.to_resource(), changed.to_resource().data)
        return Document.from_resource(res)

    async def get(self, job: Job, document_id: str) -> Document:
        """The job's document, reconciled; PrintFault NOT_FOUND when the job has no such document."""
        res = await self.engine.get_resource(KIND_DOCUMENT, document_id)
        if res is None or res.parent != job.id:
            raise PrintFault(PrintFaultCode.NOT_FOUND, f"print document {document_id} was not found")
        return await self.reconcile(Document.from_resource(res))

    async def of_job(self, job: Job) -> list[Document]:
        return [await self.reconcile(Document.from_resource(r))
                for r in await self.engine.list_resources(KIND_DOCUMENT, parent=job.id)]

    async def uploaded(self, job: Job, document_id: str) -> tuple[Document, ObjectInfo]:
        """The document and its published bytes; PrintFault NOT_FOUND before the upload completed."""
        doc = await self.get(job, document_id)
        if not doc.uploaded or not doc.object_key:
            raise PrintFault(PrintFaultCode.NOT_FOUND, "the document has not been uploaded yet")
        return doc, await self.engine.stat_object(NAMESPACE, doc.object_key)

    async def reconcile(self, doc: Document) -> Document:
        """Finish an upload whose last byte arrived but whose completion was not recorded (a crash between
        the two): the document is then uploaded on the next look. Otherwise ``doc`` unchanged."""
        if doc.uploaded or not doc.session_id:
            return doc
        try:
            session = await self.engine.get_session(doc.session_id)
        except (errors.SessionNotFound, errors.SessionGone):
            return doc
        return await self.finish(session) if session.complete else doc

    async def finish(self, session: Session) -> Document:
        """Commit a complete session and mark its document uploaded; idempotent and safe to race. A document
        that moved on to another session is returned as it is."""
        fields = UploadFields.from_extra(session.extra)
        if session.state is not SessionState.COMMITTED:
            session = await self.engine.commit(session.id, fields.owner)
        for _ in range(RETRIES):
            doc = await self._load(fields.document)
            if doc.uploaded or doc.session_id != session.id:
                return doc
            done = replace(doc, uploaded=True, size=session.length or 0, content_type=session.content_type or "",
                           display_name=session.name or "", uploaded_at=session.modified_at, object_key=session.key)
            try:
                return await self._replace(doc, done)
            except errors.Conflict:
                await anyio.sleep(0.01)
        raise errors.Conflict("the print document is changing too fast")

    # -- upload sessions ------------------------------------------------------------------------------
    async def live_session(self, session_id: str) -> Session:
        """The upload session if it is open or completed and not past its deadline; PrintFault
        SESSION_NOT_FOUND otherwise (an open one past its deadline is deleted on the way)."""
        try:
            session = await self.engine.get_session(session_id)
        except (errors.SessionNotFound, errors.SessionGone) as exc:
            raise PrintFault(PrintFaultCode.SESSION_NOT_FOUND, _ENDED) from exc
        try:
            _live(session, self.engine.clock())
        except PrintFault:
            if session.family == FAMILY and session.state is SessionState.OPEN:
                with anyio.CancelScope(shield=True):
                    try:
                        await self.engine.delete_session(session.id, UploadFields.from_extra(session.extra).owner)
                    except errors.ChunkdError:
                        pass
            raise
        return session

    async def session(self, session_id: str) -> Session:
        """The session as stored now (core SessionNotFound or SessionGone when it is not)."""
        return await self.engine.get_session(session_id)

    async def session_of(self, job: Job, document_id: str) -> Session:
        """The document's live session; PrintFault SESSION_NOT_FOUND when it has none."""
        doc = await self.get(job, document_id)
        if not doc.session_id:
            raise PrintFault(PrintFaultCode.SESSION_NOT_FOUND, "the document has no upload session")
        return await self.live_session(doc.session_id)

    async def held_session(self, job: Job, document_id: str, principal: Principal, *, deleting: bool) -> Session:
        """The document's live session if ``principal`` opened it. Another principal's: PrintFault NOT_OWNER
        when ``deleting``, SESSION_IN_PROGRESS when writing."""
        session = await self.session_of(job, document_id)
        if session.owner != principal.key:
            if deleting:
                raise PrintFault(PrintFaultCode.NOT_OWNER, "only the creator of an upload session may delete it")
            raise PrintFault(PrintFaultCode.SESSION_IN_PROGRESS,
                             "another user or application holds this document's upload session")
        return session

    async def missing(self, session: Session) -> list[Range]:
        """The first missing ranges of an open session ([] once complete)."""
        if session.state is not SessionState.OPEN:
            return []
        return await self.engine.missing(session, self.missing_limit)

    async def _current(self, doc: Document) -> Session | None:
        if not doc.session_id:
            return None
        try:
            session = await self.live_session(doc.session_id)
        except PrintFault:
            return None
        return session if session.state is SessionState.OPEN else None

    async def open_session(self, principal: Principal, job: Job, document_id: str, size: int, content_type: str,
                           name: str) -> Session:
        """The document's active session for ``principal``: created, or its own returned again.

        PrintFault JOB_STARTED or DOCUMENT_UPLOADED when nothing can be uploaded any more, and
        SESSION_IN_PROGRESS while another principal holds a session or this one holds one with other
        properties (seed 004). Two racing creators are serialised by the compare-and-set on the document; the
        loser deletes its session. A 0-byte document is uploaded at once.
        """
        for _ in range(RETRIES):
            doc = await self.reconcile(await self._load(document_id))
            if job.started:
                raise PrintFault(PrintFaultCode.JOB_STARTED, "the print job has already been started")
            if doc.uploaded:
                raise PrintFault(PrintFaultCode.DOCUMENT_UPLOADED, "the document has already been uploaded")
            current = await self._current(doc)
            if current is not None:
                if current.owner != principal.key:
                    raise PrintFault(PrintFaultCode.SESSION_IN_PROGRESS, "another user or application has an "
                                                                         "active upload session for this document")
                if (current.length, current.content_type, current.name) != (size, content_type, name):
                    raise PrintFault(PrintFaultCode.SESSION_IN_PROGRESS, "an active upload session with other "
                                                                         "properties exists; delete it first")
                return current
            ttl = self.engine.config.session_ttl
            fields = UploadFields(deadline=self.engine.clock() + ttl, document=document_id, job=job.id,
                                  printer=job.printer_id, principal=principal_data(principal))
            session = await self.engine.create_session(
                principal, FAMILY, NAMESPACE, f"{job.tenant or 'no-tenant'}/{document_id}", size,
                session_id=str(uuid.uuid4()), content_type=content_type, name=name, ttl=ttl, commit_on_complete=True,
                extra=fields.to_extra())
            try:
                await self._replace(doc, replace(doc, session_id=session.id))
            except errors.Conflict:
                await self.engine.delete_session(session.id, principal)
                await anyio.sleep(0.01)
                continue
            if session.complete:
                await self.finish(session)
                session = await self.engine.get_session(session.id)
            return session
        raise errors.Conflict("the print document is changing too fast")

    async def write(self, session_id: str, writer: Principal | None, start: int, end: int, body: Body, *,
                    check: Callable[[Session], None] | None = None, report_missing: bool = False) -> Written:
        """Write ``[start, end)`` of an upload: one claim and one record transaction. ``writer`` None is the
        uploadUrl (the URL is the credential): the session's liveness and ``check`` then run on the session
        the claim read, and a vanished session is PrintFault SESSION_NOT_FOUND. The segment that completes
        the upload finishes the document (returned in :attr:`Written.document`; :attr:`Written.session` is then
        the session as the write left it, before its commit). Retrying a written
        segment is a no-op."""
        if writer is None:
            def checks(session: Session) -> None:
                _live(session, self.engine.clock())
                if check is not None:
                    check(session)
        try:
            result = await self.engine.write_range(session_id, writer, start, end, body,
                                                   check=checks if writer is None else check,
                                                   missing_limit=self.missing_limit if report_missing else None)
        except (errors.SessionNotFound, errors.SessionGone) as exc:
            if writer is not None:
                raise
            raise PrintFault(PrintFaultCode.SESSION_NOT_FOUND, _ENDED) from exc
        if not result.session.complete:
            return Written(result.session, result.missing)
        return Written(result.session, [], await self.finish(result.session))

    async def cancel(self, session: Session) -> None:
        """Delete an open upload session and unlink it from its document. PrintFault SESSION_ENDED once the
        upload is complete (the document keeps its bytes)."""
        if session.state is not SessionState.OPEN:
            raise PrintFault(PrintFaultCode.SESSION_ENDED,
                             "the document is already uploaded; its session cannot be cancelled")
        fields = UploadFields.from_extra(session.extra)
        await self.engine.delete_session(session.id, fields.owner)
        for _ in range(RETRIES):
            res = await self.engine.get_resource(KIND_DOCUMENT, fields.document)
            if res is None or res.data.get("sessionId") != session.id:
                return
            doc = Document.from_resource(res)
            try:
                await self._replace(doc, replace(doc, session_id=None))
                return
            except errors.Conflict:
                await anyio.sleep(0.01)
