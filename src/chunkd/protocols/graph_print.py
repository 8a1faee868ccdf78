"""Microsoft Graph Universal Print upload sessions (``/v1.0/print/...``, ``/beta/print/...``) on the core.

Printers, jobs and documents are engine resources (kinds ``print.printer``, ``print.job``,
``print.document``) scoped to a tenant. A document's bytes are one engine session per upload; when the
last byte arrives the session is committed as object ``print/<tenant>/<documentId>`` and the document is
marked uploaded. Both upload forms share that session:

* the seeds' ``printUploadSession``: ``PUT/GET/DELETE .../uploadSession``, segments to ``.../$value``;
* the current ``createUploadSession``: a self-authenticating ``uploadUrl`` (``/print-upload/{id}``).

Deliberate differences from the service are listed in docs/graph-print.md.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from chunkd.auth.authenticator import Authenticator
from chunkd.auth.permissions import (
    PRINTERS_CREATE,
    PRINTJOB_CREATE,
    PRINTJOB_READ,
    PRINTJOB_READ_ALL,
    PRINTJOB_READWRITE,
    PRINTJOB_READWRITE_ALL,
)
from chunkd.auth.urlsign import BadUrlToken, ExpiredUrlToken, UrlSigner
from chunkd.core import errors
from chunkd.core.engine import Engine
from chunkd.core.models import Session, SessionState
from chunkd.core.principal import Principal
from chunkd.core.resources import Resource
from chunkd.protocols import graph_print_wire as wire
from chunkd.protocols._graph import GraphError, authenticate, graph_call, json_object, require
from chunkd.protocols._http import object_response, public_base, request_body
from chunkd.protocols._routing import ANY_PATH
from chunkd.services.printers import DEFAULT_CONTENT_TYPES, KIND_DOCUMENT, KIND_JOB, KIND_PRINTER, register_printer

log = logging.getLogger("chunkd.graph_print")

NAMESPACE = "print"
FAMILY = "graph-print"
VERSIONS = ("v1.0", "beta")
COLLECTIONS = ("printers", "shares", "printerShares")
UPLOAD_PATH = "/print-upload"
# nextExpectedRanges lists the first gaps only, as OneDrive's upload sessions do ("won't always list all
# of the missing ranges"): clients upload those and get the next ones in each answer. Keeps the query
# O(1) in the number of received ranges (bench section 5c).
NEXT_EXPECTED_RANGES = 100

# Which permissions allow what (seeds 001/004 and the v1.0 pages). Only the ".All" ones reach other users' jobs.
READ = (PRINTJOB_READ, PRINTJOB_READWRITE, PRINTJOB_READ_ALL, PRINTJOB_READWRITE_ALL)
CREATE = (PRINTJOB_CREATE, PRINTJOB_READWRITE, PRINTJOB_READWRITE_ALL)  # create job, createUploadSession, start
READWRITE = (PRINTJOB_READWRITE, PRINTJOB_READWRITE_ALL)  # the seeds' session create/delete/segments
ANY_PRINT = tuple(dict.fromkeys(READ + CREATE))
TENANT_WIDE = frozenset({PRINTJOB_READ_ALL, PRINTJOB_READWRITE_ALL})


def _principal_data(principal: Principal) -> dict[str, str]:
    return {"kind": principal.kind, "tenant": principal.tenant, "user": principal.user, "app": principal.app}


def _owner(session: Session) -> Principal:
    """The principal that created the session (uploadUrl requests carry no token of their own)."""
    p = session.extra.get("principal", {})
    return Principal(kind=p.get("kind", "anonymous"), tenant=p.get("tenant", ""), user=p.get("user", ""),
                     app=p.get("app", ""))


def _check_upload_session(session: Session) -> None:
    """A print upload session that has not passed its deadline (expirationDateTime)."""
    if session.family != FAMILY:
        raise GraphError(404, "itemNotFound", "the upload session does not exist", "uploadSessionNotFound")
    if float(session.extra.get("deadline", 0)) < time.time():
        raise GraphError(404, "itemNotFound", "the upload session expired", "uploadSessionNotFound")


def _not_found(what: str) -> GraphError:
    return GraphError(404, "itemNotFound", f"{what} was not found")


class GraphPrintAPI:
    """Routes of the print API and of the upload URLs."""

    def __init__(self, engine: Engine, authenticator: Authenticator, signer: UrlSigner) -> None:
        self.engine = engine
        self.auth = authenticator
        self.signer = signer

    @property
    def routes(self) -> list[BaseRoute]:
        methods = ["GET", "PUT", "POST", "DELETE", "PATCH"]
        out: list[BaseRoute] = []
        for version in VERSIONS:
            out.append(Route(f"/{version}/print/{{rest:{ANY_PATH}}}", self.dispatch, methods=methods))
        out.append(Route(UPLOAD_PATH + "/{session_id}", self.upload_url, methods=methods))
        return out

    # -- dispatch ---------------------------------------------------------------------------------
    async def dispatch(self, request: Request) -> Response:
        return await graph_call(request, lambda: self._dispatch(request))

    async def _dispatch(self, request: Request) -> Response:
        version = request.url.path.split("/", 2)[1]
        segs = [s.removeprefix("microsoft.graph.") for s in request.path_params["rest"].split("/") if s]
        method = "GET" if request.method == "HEAD" else request.method  # HEAD: GET's headers, no body
        principal = authenticate(self.auth, request)
        n = len(segs)
        if n == 0 or segs[0] not in COLLECTIONS:
            raise GraphError(400, "invalidRequest", f"unsupported print resource {'/'.join(segs) or '(none)'}")
        ctx = _Ctx(self, request, principal, version)
        if n == 1:
            if method == "GET":
                return await ctx.list_printers(segs[0])
            if method == "POST" and segs[0] == "printers":
                return await ctx.register_printer()
            raise _method(method)
        pid = segs[1]
        if n == 2 and method == "GET":
            return await ctx.get_printer(segs[0], pid)
        if n < 3 or segs[2] != "jobs":
            raise _unsupported(method, segs)
        if n == 3:
            if method == "GET":
                return await ctx.list_jobs(pid)
            if method == "POST":
                return await ctx.create_job(pid)
            raise _method(method)
        jid = segs[3]
        if n == 4 and method == "GET":
            return await ctx.get_job(pid, jid)
        if n == 5 and segs[4] in ("start", "startPrintJob") and method == "POST":
            return await ctx.start_job(pid, jid)
        if n < 5 or segs[4] != "documents":
            raise _unsupported(method, segs)
        if n == 5 and method == "GET":
            return await ctx.list_documents(pid, jid)
        if n < 6:
            raise _method(method)
        did = segs[5]
        tail = segs[6:]
        if not tail and method == "GET":
            return await ctx.get_document(pid, jid, did)
        if tail == ["$value"] and method == "GET":
            return await ctx.download(pid, jid, did)
        if tail == ["createUploadSession"] and method == "POST":
            return await ctx.create_upload_session(pid, jid, did)
        if tail == ["uploadSession"]:
            if method == "PUT":
                return await ctx.put_upload_session(pid, jid, did)
            if method == "GET":
                return await ctx.get_upload_session(pid, jid, did)
            if method == "DELETE":
                return await ctx.delete_upload_session(pid, jid, did)
        if tail == ["uploadSession", "$value"] and method in ("POST", "PUT"):
            return await ctx.upload_segment(pid, jid, did)
        raise _unsupported(method, segs)

    # -- the current form's uploadUrl -------------------------------------------------------------
    async def upload_url(self, request: Request) -> Response:
        return await graph_call(request, lambda: self._upload_url(request))

    async def _upload_url(self, request: Request) -> Response:
        if request.method not in ("GET", "PUT", "DELETE"):
            raise _method(request.method)
        sid = request.path_params["session_id"]
        token = request.query_params.get("tempauthtoken", "")
        try:
            self.signer.verify(sid, token, time.time())
        except BadUrlToken as exc:
            raise GraphError(401, "InvalidAuthenticationToken", str(exc)) from exc
        except ExpiredUrlToken as exc:
            raise GraphError(404, "itemNotFound", "the upload session expired", "uploadSessionNotFound") from exc
        # Authorization headers are ignored here: the URL is the credential (the docs warn clients off them).
        if request.method == "PUT":
            return await self._put_segment(request, sid)
        session = await self.live_session(sid)
        if request.method == "GET":
            return JSONResponse(wire.upload_session_json(session, await self._missing(session),
                                                         self.upload_url_for(request, session)))
        await self.cancel(session)  # DELETE
        return Response(status_code=204)

    async def _put_segment(self, request: Request, sid: str) -> Response:
        """A segment to the uploadUrl: one claim and one record transaction, the session's checks run on
        the session the claim read, and the answer's nextExpectedRanges come from the record."""
        start, end, total = wire.parse_segment_range(request.headers.get("content-range"),
                                                     request.headers.get("content-length"))

        def check(session: Session) -> None:
            _check_upload_session(session)
            wire.check_segment_fits(start, end, total, session.length or 0)

        try:
            result = await self.engine.write_range(sid, None, start, end, request_body(request), check=check,
                                                   missing_limit=NEXT_EXPECTED_RANGES)
        except (errors.SessionNotFound, errors.SessionGone) as exc:
            raise GraphError(404, "itemNotFound", "the upload session does not exist or has ended",
                             "uploadSessionNotFound") from exc
        session = result.session
        if session.complete:
            doc = await self.finish(session)
            return JSONResponse(_with_context(request, "printDocument", wire.document_json(doc)), status_code=201)
        missing = result.missing if result.missing is not None else await self._missing(session)
        return JSONResponse(wire.upload_session_json(session, missing, None), status_code=202)

    def upload_url_for(self, request: Request, session: Session) -> str:
        token = self.signer.sign(session.id, float(session.extra["deadline"]))
        return f"{public_base(request)}{UPLOAD_PATH}/{session.id}?tempauthtoken={token}"

    # -- shared session logic ---------------------------------------------------------------------
    async def live_session(self, session_id: str) -> Session:
        """The document's upload session if it is open or completed and not past its deadline."""
        try:
            session = await self.engine.get_session(session_id)
        except (errors.SessionNotFound, errors.SessionGone) as exc:
            raise GraphError(404, "itemNotFound", "the upload session does not exist or has ended",
                             "uploadSessionNotFound") from exc
        try:
            _check_upload_session(session)
        except GraphError:
            if session.family == FAMILY and session.state is SessionState.OPEN:
                with anyio.CancelScope(shield=True):
                    try:
                        await self.engine.delete_session(session.id, _owner(session))
                    except errors.ChunkdError:
                        pass
            raise
        return session

    async def _missing(self, session: Session) -> list[tuple[int, int]]:
        if session.state is not SessionState.OPEN:
            return []
        return await self.engine.missing(session, NEXT_EXPECTED_RANGES)

    async def write_segment(self, request: Request, session: Session, writer: Principal) -> Session:
        assert session.length is not None
        start, end = wire.parse_content_range(request.headers.get("content-range"),
                                              request.headers.get("content-length"), session.length)
        result = await self.engine.write_range(session.id, writer, start, end, request_body(request))
        return result.session

    async def finish(self, session: Session) -> Resource:
        """Commit a complete session and mark its document uploaded; idempotent and safe to race."""
        if session.state is not SessionState.COMMITTED:
            session = await self.engine.commit(session.id, _owner(session))
        for _ in range(50):
            doc = await self.engine.get_resource(KIND_DOCUMENT, str(session.extra["document"]))
            if doc is None:
                raise _not_found("the print document")
            d = doc.data
            if d.get("uploaded") or d.get("sessionId") != session.id:
                return doc
            data = {**d, "uploaded": True, "size": session.length, "contentType": session.content_type,
                    "displayName": session.name, "uploadedAt": session.modified_at, "objectKey": session.key}
            try:
                return await self.engine.update_resource(doc, data)
            except errors.Conflict:
                await anyio.sleep(0.01)
        raise errors.Conflict("the print document is changing too fast")

    async def reconcile(self, doc: Resource) -> Resource:
        """Finish an upload whose last byte arrived but whose completion was not recorded (a crash between
        the two): the document is then marked uploaded on the next look."""
        sid = doc.data.get("sessionId")
        if doc.data.get("uploaded") or not sid:
            return doc
        try:
            session = await self.engine.get_session(str(sid))
        except (errors.SessionNotFound, errors.SessionGone):
            return doc
        if session.complete:
            return await self.finish(session)
        return doc

    async def cancel(self, session: Session) -> None:
        if session.state is not SessionState.OPEN:
            raise GraphError(409, "conflict", "the document is already uploaded; its session cannot be cancelled")
        await self.engine.delete_session(session.id, _owner(session))
        for _ in range(50):
            doc = await self.engine.get_resource(KIND_DOCUMENT, str(session.extra["document"]))
            if doc is None or doc.data.get("sessionId") != session.id:
                return
            try:
                await self.engine.update_resource(doc, {**doc.data, "sessionId": None})
                return
            except errors.Conflict:
                await anyio.sleep(0.01)

    async def open_session(self, principal: Principal, job: Resource, doc_id: str,
                           props: tuple[int, str, str]) -> Session:
        """The document's active session for ``principal``: created, or its own returned again.

        One principal at a time may hold a document's session (seed 004): another principal gets 409.
        Two racing creators are serialised by the compare-and-set on the document.
        """
        size, content_type, name = props
        for _ in range(50):
            doc = await self.engine.get_resource(KIND_DOCUMENT, doc_id)
            if doc is None:
                raise _not_found("the print document")
            doc = await self.reconcile(doc)
            if job.data.get("started"):
                raise GraphError(409, "conflict", "the print job has already been started")
            if doc.data.get("uploaded"):
                raise GraphError(409, "conflict", "the document has already been uploaded", "documentUploaded")
            current = await self._current(doc)
            if current is not None:
                if current.owner != principal.key:
                    raise GraphError(409, "conflict", "another user or application has an active upload session "
                                                      "for this document", "uploadSessionInProgress")
                if (current.length, current.content_type, current.name) != (size, content_type, name):
                    raise GraphError(409, "conflict", "an active upload session with other properties exists; "
                                                      "delete it first", "uploadSessionInProgress")
                return current
            ttl = self.engine.config.session_ttl
            extra = {"deadline": time.time() + ttl, "document": doc_id, "job": job.id,
                     "printer": job.parent, "principal": _principal_data(principal)}
            session = await self.engine.create_session(
                principal, FAMILY, NAMESPACE, f"{job.tenant or 'no-tenant'}/{doc_id}", size,
                session_id=str(uuid.uuid4()), content_type=content_type, name=name, ttl=ttl, commit_on_complete=True,
                extra=extra)
            try:
                await self.engine.update_resource(doc, {**doc.data, "sessionId": session.id})
            except errors.Conflict:
                await self.engine.delete_session(session.id, principal)
                await anyio.sleep(0.01)
                continue
            if session.complete:  # a 0-byte document is complete at once
                await self.finish(session)
                session = await self.engine.get_session(session.id)
            return session
        raise errors.Conflict("the print document is changing too fast")

    async def _current(self, doc: Resource) -> Session | None:
        sid = doc.data.get("sessionId")
        if not sid:
            return None
        try:
            session = await self.live_session(str(sid))
        except GraphError:
            return None
        return session if session.state is SessionState.OPEN else None


class _Ctx:
    """One request of the print API: the caller and the lookups its handlers share."""

    def __init__(self, api: GraphPrintAPI, request: Request, principal: Principal, version: str) -> None:
        self.api, self.engine, self.request, self.principal, self.version = api, api.engine, request, principal, version

    # -- lookups ----------------------------------------------------------------------------------
    def _visible(self, resource: Resource) -> bool:
        # Another tenant's objects do not exist for the caller. --no-auth (anonymous) sees every tenant.
        return self.principal.kind == "anonymous" or resource.tenant == self.principal.tenant

    async def printer(self, pid: str) -> Resource:
        printer = await self.engine.get_resource(KIND_PRINTER, pid)
        if printer is None or not self._visible(printer):
            raise _not_found(f"printer {pid}")
        return printer

    async def job(self, pid: str, jid: str, allowed: tuple[str, ...], what: str) -> Resource:
        granted = require(self.principal, allowed, what)
        printer = await self.printer(pid)
        job = await self.engine.get_resource(KIND_JOB, jid)
        if job is None or job.parent != printer.id or not self._visible(job):
            raise _not_found(f"print job {jid}")
        if not granted & TENANT_WIDE and job.owner != self.principal.key:
            raise GraphError(403, "accessDenied", "without PrintJob.Read.All or PrintJob.ReadWrite.All only your "
                                                  "own print jobs can be reached")
        return job

    async def document(self, job: Resource, did: str) -> Resource:
        doc = await self.engine.get_resource(KIND_DOCUMENT, did)
        if doc is None or doc.parent != job.id:
            raise _not_found(f"print document {did}")
        return await self.api.reconcile(doc)

    async def documents(self, job: Resource) -> list[Resource]:
        docs = await self.engine.list_resources(KIND_DOCUMENT, parent=job.id)
        return [await self.api.reconcile(d) for d in docs]

    def acting(self, printer: Resource) -> Principal:
        """The caller; with --no-auth it acts inside the printer's tenant so its objects get a tenant."""
        if self.principal.kind == "anonymous":
            return dataclasses.replace(self.principal, tenant=printer.tenant)
        return self.principal

    def ok(self, body: dict[str, Any], entity: str, status: int = 200, headers: dict[str, str] | None = None
           ) -> JSONResponse:
        return JSONResponse(_with_context(self.request, entity, body, self.version), status_code=status,
                            headers=headers)

    # -- printers ---------------------------------------------------------------------------------
    async def list_printers(self, collection: str) -> Response:
        require(self.principal, ANY_PRINT, "listing printers")
        tenant = None if self.principal.kind == "anonymous" else self.principal.tenant
        printers = await self.engine.list_resources(KIND_PRINTER, tenant=tenant)
        render = wire.printer_json if collection == "printers" else wire.share_json
        return self.ok({"value": [render(p) for p in printers]}, collection)

    async def get_printer(self, collection: str, pid: str) -> Response:
        require(self.principal, ANY_PRINT, "reading a printer")
        printer = await self.printer(pid)
        render = wire.printer_json if collection == "printers" else wire.share_json
        return self.ok(render(printer), f"{collection}/$entity")

    async def register_printer(self) -> Response:
        """chunkd's admin route: ``POST /{version}/print/printers {"displayName", "contentTypes"?}``."""
        if not self.principal.has_any(PRINTERS_CREATE):
            raise GraphError(403, "accessDenied", f"registering printers needs {PRINTERS_CREATE}")
        body = await json_object(self.request)
        name = body.get("displayName")
        if not isinstance(name, str) or not name.strip():
            raise GraphError(400, "invalidRequest", "displayName is required")
        types = body.get("contentTypes")
        if types is not None and (not isinstance(types, list) or not types
                                  or not all(isinstance(t, str) and t.strip() for t in types)):
            raise GraphError(400, "invalidRequest", "contentTypes must be a non-empty list of MIME types")
        printer = await register_printer(self.engine, self.principal, name.strip(), types)
        return self.ok(wire.printer_json(printer), "printers/$entity", 201)

    # -- jobs -------------------------------------------------------------------------------------
    async def list_jobs(self, pid: str) -> Response:
        granted = require(self.principal, READ, "listing print jobs")
        printer = await self.printer(pid)
        owner = None if granted & TENANT_WIDE else self.principal.key
        jobs = await self.engine.list_resources(KIND_JOB, parent=printer.id, owner=owner)
        return self.ok({"value": [wire.job_json(j, await self.documents(j)) for j in jobs if self._visible(j)]},
                       "jobs")

    async def create_job(self, pid: str) -> Response:
        require(self.principal, CREATE, "creating a print job")
        printer = await self.printer(pid)
        body = await json_object(self.request)
        config = body.get("configuration")
        if config is not None and not isinstance(config, dict):
            raise GraphError(400, "invalidRequest", "configuration must be an object")
        actor = self.acting(printer)
        job_id, doc_id = str(uuid.uuid4()), str(uuid.uuid4())
        # The document first: a job is never visible without its stub.
        doc = await self.engine.create_resource(KIND_DOCUMENT, doc_id, actor, {
            "displayName": "", "contentType": "", "size": 0, "uploaded": False, "sessionId": None}, parent=job_id)
        job = await self.engine.create_resource(KIND_JOB, job_id, actor, {
            "configuration": config or {}, "createdBy": _principal_data(actor), "started": False}, parent=printer.id)
        return self.ok(wire.job_json(job, [doc]), "jobs/$entity", 201)

    async def get_job(self, pid: str, jid: str) -> Response:
        job = await self.job(pid, jid, READ, "reading a print job")
        return self.ok(wire.job_json(job, await self.documents(job)), "jobs/$entity")

    async def start_job(self, pid: str, jid: str) -> Response:
        job = await self.job(pid, jid, CREATE, "starting a print job")
        for _ in range(50):
            if job.data.get("started"):
                return self.ok(wire.job_status(job), "microsoft.graph.printJobStatus")
            docs = await self.documents(job)
            if not docs or not all(d.data.get("uploaded") for d in docs):
                raise GraphError(409, "conflict", "every document of the job must be uploaded before it starts",
                                 "uploadSessionIncomplete")
            try:
                job = await self.engine.update_resource(job, {**job.data, "started": True})
            except errors.Conflict:
                await anyio.sleep(0.01)
                job = await self.job(pid, jid, CREATE, "starting a print job")
        return self.ok(wire.job_status(job), "microsoft.graph.printJobStatus")

    # -- documents --------------------------------------------------------------------------------
    async def list_documents(self, pid: str, jid: str) -> Response:
        job = await self.job(pid, jid, READ, "listing print documents")
        return self.ok({"value": [wire.document_json(d) for d in await self.documents(job)]}, "documents")

    async def get_document(self, pid: str, jid: str, did: str) -> Response:
        job = await self.job(pid, jid, READ, "reading a print document")
        doc = await self.document(job, did)
        return self.ok(wire.document_json(doc), "documents/$entity")

    async def download(self, pid: str, jid: str, did: str) -> Response:
        job = await self.job(pid, jid, READ, "downloading a print document")
        doc = await self.document(job, did)
        key = doc.data.get("objectKey")
        if not doc.data.get("uploaded") or not key:
            raise GraphError(404, "itemNotFound", "the document has not been uploaded yet")
        info = await self.engine.stat_object(NAMESPACE, str(key))
        return object_response(self.engine, info, self.request.headers.get("range"),
                               media_type=str(doc.data.get("contentType") or "application/octet-stream"),
                               head=self.request.method == "HEAD")

    # -- upload sessions --------------------------------------------------------------------------
    async def _props(self, job: Resource, body: dict[str, Any]) -> tuple[int, str, str]:
        printer = await self.printer(job.parent)
        types = list(printer.data.get("contentTypes") or DEFAULT_CONTENT_TYPES)
        return wire.upload_properties(body, types, self.engine.config.max_size)

    async def create_upload_session(self, pid: str, jid: str, did: str) -> Response:
        job = await self.job(pid, jid, CREATE, "creating an upload session")
        await self.document(job, did)
        body = await json_object(self.request)
        props = body.get("properties")
        if not isinstance(props, dict):
            raise GraphError(400, "invalidRequest", "properties (documentName, contentType, size) are required")
        session = await self.api.open_session(self.principal, job, did, await self._props(job, props))
        body = wire.upload_session_json(session, await self.api._missing(session),
                                        self.api.upload_url_for(self.request, session))
        return self.ok(body, "microsoft.graph.uploadSession")

    async def put_upload_session(self, pid: str, jid: str, did: str) -> Response:
        job = await self.job(pid, jid, READWRITE, "creating an upload session")
        await self.document(job, did)
        body = await json_object(self.request)
        session = await self.api.open_session(self.principal, job, did, await self._props(job, body))
        return await self._session_response(session, 200)

    async def _session_response(self, session: Session, status: int) -> Response:
        body = wire.print_upload_session_json(session, await self.api._missing(session))
        return self.ok(body, "microsoft.graph.printUploadSession", status, {"ETag": wire.etag(session)})

    async def _doc_session(self, job: Resource, did: str) -> Session:
        doc = await self.document(job, did)
        sid = doc.data.get("sessionId")
        if not sid:
            raise GraphError(404, "itemNotFound", "the document has no upload session", "uploadSessionNotFound")
        return await self.api.live_session(str(sid))

    async def get_upload_session(self, pid: str, jid: str, did: str) -> Response:
        job = await self.job(pid, jid, READ, "reading an upload session")
        return await self._session_response(await self._doc_session(job, did), 200)

    async def delete_upload_session(self, pid: str, jid: str, did: str) -> Response:
        job = await self.job(pid, jid, READWRITE, "deleting an upload session")
        session = await self._doc_session(job, did)
        if session.owner != self.principal.key:
            raise GraphError(403, "accessDenied", "only the creator of an upload session may delete it")
        wire.check_if_match(self.request.headers.get("if-match"), session)
        await self.api.cancel(session)
        return Response(status_code=204)

    async def upload_segment(self, pid: str, jid: str, did: str) -> Response:
        job = await self.job(pid, jid, READWRITE, "uploading document data")
        session = await self._doc_session(job, did)
        if session.owner != self.principal.key:
            raise GraphError(409, "conflict", "another user or application holds this document's upload session",
                             "uploadSessionInProgress")
        wire.check_if_match(self.request.headers.get("if-match"), session)
        session = await self.api.write_segment(self.request, session, self.principal)
        if session.complete:
            await self.api.finish(session)
            session = await self.engine.get_session(session.id)
            return await self._session_response(session, 201)
        return await self._session_response(session, 202)


def _with_context(request: Request, entity: str, body: dict[str, Any], version: str = "v1.0") -> dict[str, Any]:
    return {"@odata.context": f"{public_base(request)}/{version}/$metadata#{entity}", **body}


def _method(method: str) -> GraphError:
    return GraphError(405, "invalidRequest", f"{method} is not supported on this resource")


def _unsupported(method: str, segs: list[str]) -> GraphError:
    return GraphError(400, "invalidRequest", f"unsupported request {method} print/{'/'.join(segs)}")
