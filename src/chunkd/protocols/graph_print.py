"""Microsoft Graph Universal Print upload sessions (``/v1.0/print/...``, ``/beta/print/...``): the HTTP side.

Printers, jobs, documents and their upload sessions are domain services (:mod:`chunkd.services.printers`,
:mod:`chunkd.services.print_jobs`, :mod:`chunkd.services.print_documents`); this module declares the
routes, checks permissions, parses requests and answers Graph JSON. Both upload forms share a document's
session:

* the seeds' ``printUploadSession``: ``PUT/GET/DELETE .../uploadSession``, segments to ``.../$value``;
* the current ``createUploadSession``: a self-authenticating ``uploadUrl`` (``/print-upload/{id}``).

Paths are matched in their canonical spelling; any other (a segment with the ``microsoft.graph.`` prefix,
empty segments) reaches the catch-all route, which matches its canonical form against the declared routes
again, and otherwise gives the answer for an unsupported path or method. Deliberate differences from the
service are listed in docs/graph-print.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route

from chunkd.auth.authenticator import Authenticator, note_principal
from chunkd.auth.urlsign import BadUrlToken, ExpiredUrlToken, UrlSigner
from chunkd.core.engine import Engine
from chunkd.core.models import Session
from chunkd.protocols import graph_print_handlers as h
from chunkd.protocols import graph_print_wire as wire
from chunkd.protocols._graph import GraphError, authenticate, graph_call
from chunkd.protocols._http import public_base, request_body
from chunkd.protocols._routing import ANY_PATH, ExactRoute
from chunkd.services.print_documents import PrintDocuments
from chunkd.services.print_jobs import PrintJobs
from chunkd.services.print_records import PrintFault, PrintFaultCode
from chunkd.services.printers import Printers

VERSIONS = ("v1.0", "beta")
COLLECTIONS = ("printers", "shares", "printerShares")
UPLOAD_PATH = "/print-upload"
# nextExpectedRanges lists the first gaps only, as OneDrive's upload sessions do ("won't always list all
# of the missing ranges"): clients upload those and get the next ones in each answer. Keeps the query
# O(1) in the number of received ranges (bench section 5c).
NEXT_EXPECTED_RANGES = 100
# what the catch-all route takes; a method beyond these matches no route (the application's 405)
METHODS = ["GET", "PUT", "POST", "DELETE", "PATCH"]

# the print services' fault codes -> (status, Graph error code, inner code)
FAULTS: dict[PrintFaultCode, tuple[int, str, str | None]] = {
    PrintFaultCode.NOT_FOUND: (404, "itemNotFound", None),
    PrintFaultCode.SESSION_NOT_FOUND: (404, "itemNotFound", "uploadSessionNotFound"),
    PrintFaultCode.NOT_OWNER: (403, "accessDenied", None),
    PrintFaultCode.JOB_STARTED: (409, "conflict", None),
    PrintFaultCode.DOCUMENT_UPLOADED: (409, "conflict", "documentUploaded"),
    PrintFaultCode.SESSION_IN_PROGRESS: (409, "conflict", "uploadSessionInProgress"),
    PrintFaultCode.SESSION_ENDED: (409, "conflict", None),
    PrintFaultCode.INCOMPLETE: (409, "conflict", "uploadSessionIncomplete"),
}


def as_graph_error(fault: PrintFault) -> GraphError:
    status, code, inner = FAULTS[fault.code]
    return GraphError(status, code, fault.message, inner)


class _Pattern(Convertor[str]):
    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class _Version(_Pattern):
    regex = "|".join(v.replace(".", r"\.") for v in VERSIONS)


class _Collection(_Pattern):
    regex = "|".join(COLLECTIONS)


register_url_convertor("print_version", _Version())
register_url_convertor("print_collection", _Collection())
BASE = "/{version:print_version}/print"
PRINTER = BASE + "/{collection:print_collection}/{pid}"
JOB = PRINTER + "/jobs/{jid}"
DOC = JOB + "/documents/{did}"


class GraphPrintAPI:
    """Routes of the print API and of the upload URLs."""

    def __init__(self, engine: Engine, authenticator: Authenticator, signer: UrlSigner) -> None:
        self.engine = engine
        self.auth = authenticator
        self.signer = signer
        self.printers = Printers(engine)
        self.documents = PrintDocuments(engine, NEXT_EXPECTED_RANGES)
        self.jobs = PrintJobs(engine, self.printers, self.documents)
        self._declared = self._declare()

    def _declare(self) -> list[tuple[Route, h.Handler]]:
        table: list[tuple[str, list[str], h.Handler]] = [
            (BASE + "/{collection:print_collection}", ["GET"], h.list_printers),
            (BASE + "/printers", ["POST"], h.register_printer),
            (PRINTER, ["GET"], h.get_printer),
            (PRINTER + "/jobs", ["GET"], h.list_jobs),
            (PRINTER + "/jobs", ["POST"], h.create_job),
            (JOB, ["GET"], h.get_job),
            (JOB + "/start", ["POST"], h.start_job),
            (JOB + "/startPrintJob", ["POST"], h.start_job),
            (JOB + "/documents", ["GET"], h.list_documents),
            (DOC, ["GET"], h.get_document),
            (DOC + "/$value", ["GET"], h.download),
            (DOC + "/createUploadSession", ["POST"], h.create_upload_session),
            (DOC + "/uploadSession", ["PUT"], h.put_upload_session),
            (DOC + "/uploadSession", ["GET"], h.get_upload_session),
            (DOC + "/uploadSession", ["DELETE"], h.delete_upload_session),
            (DOC + "/uploadSession/$value", ["POST", "PUT"], h.upload_segment),
        ]
        return [(ExactRoute(path, self._endpoint(handler), methods=methods), handler)
                for path, methods, handler in table]

    @property
    def routes(self) -> list[BaseRoute]:
        out: list[BaseRoute] = [route for route, _ in self._declared]
        out.append(ExactRoute(f"{BASE}/{{rest:{ANY_PATH}}}", self._endpoint(self._other), methods=METHODS))
        out.append(Route(UPLOAD_PATH + "/{session_id}", self.upload_url, methods=METHODS))
        return out

    def _endpoint(self, handler: h.Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await graph_call(request, lambda: self._run(request, handler))
        return endpoint

    async def _run(self, request: Request, handler: h.Handler) -> Response:
        principal = authenticate(self.auth, request)
        params = dict(request.path_params)
        try:
            return await handler(h.Call(self, request, principal, params.get("version", "v1.0"), params))
        except PrintFault as fault:
            raise as_graph_error(fault) from fault

    async def _other(self, call: h.Call) -> Response:
        """A path not in its canonical spelling is served by the route its canonical spelling matches;
        anything else is an unsupported resource (400) or method (405)."""
        request = call.request
        segs = [s.removeprefix("microsoft.graph.") for s in call.params["rest"].split("/") if s]
        canonical = f"/{call.version}/print/" + "/".join(segs)
        if canonical != request.scope["path"]:
            scope = {**request.scope, "path": canonical}
            for route, handler in self._declared:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    params = dict(child["path_params"])
                    return await handler(h.Call(self, Request({**scope, **child}, request.receive), call.principal,
                                              call.version, params))
        method = "GET" if request.method == "HEAD" else request.method
        n = len(segs)
        if n == 0 or segs[0] not in COLLECTIONS:
            raise GraphError(400, "invalidRequest", f"unsupported print resource {'/'.join(segs) or '(none)'}")
        if n == 1 or (n in (3, 5) and segs[2] == "jobs" and (n == 3 or segs[4] == "documents")):
            raise _method(method)
        raise GraphError(400, "invalidRequest", f"unsupported request {method} print/{'/'.join(segs)}")

    # -- the current form's uploadUrl -------------------------------------------------------------
    async def upload_url(self, request: Request) -> Response:
        return await graph_call(request, lambda: self._upload_url(request))

    async def _upload_url(self, request: Request) -> Response:
        if request.method not in ("GET", "PUT", "DELETE"):
            raise _method(request.method)
        sid = request.path_params["session_id"]
        token = request.query_params.get("tempauthtoken", "")
        try:
            # the deadline in the token came from the engine's clock (the store's); judge it by the same one
            self.signer.verify(sid, token, self.engine.clock())
        except BadUrlToken as exc:
            raise GraphError(401, "InvalidAuthenticationToken", str(exc)) from exc
        except ExpiredUrlToken as exc:
            raise GraphError(404, "itemNotFound", "the upload session expired", "uploadSessionNotFound") from exc
        note_principal(request.scope, f"upload-url:{sid}")
        # Authorization headers are ignored here: the URL is the credential (the docs warn clients off them).
        try:
            if request.method == "PUT":
                return await self._put_segment(request, sid)
            session = await self.documents.live_session(sid)
            if request.method == "GET":
                return JSONResponse(wire.upload_session_json(session, await self.documents.missing(session),
                                                             self.upload_url_for(request, session)))
            await self.documents.cancel(session)  # DELETE
        except PrintFault as fault:
            raise as_graph_error(fault) from fault
        return Response(status_code=204)

    async def _put_segment(self, request: Request, sid: str) -> Response:
        """A segment to the uploadUrl: one claim and one record transaction, the session's checks run on
        the session the claim read, and the answer's nextExpectedRanges come from the record."""
        start, end, total = wire.parse_segment_range(request.headers.get("content-range"),
                                                     request.headers.get("content-length"))

        def fits(session: Session) -> None:
            wire.check_segment_fits(start, end, total, session.length or 0)

        written = await self.documents.write(sid, None, start, end, request_body(request), check=fits,
                                             report_missing=True)
        if written.document is not None:
            return JSONResponse(h.with_context(request, "printDocument", wire.document_json(written.document)),
                                status_code=201)
        missing = written.missing if written.missing is not None else await self.documents.missing(written.session)
        return JSONResponse(wire.upload_session_json(written.session, missing, None), status_code=202)

    def upload_url_for(self, request: Request, session: Session) -> str:
        token = self.signer.sign(session.id, wire.deadline(session))
        return f"{public_base(request)}{UPLOAD_PATH}/{session.id}?tempauthtoken={token}"


def _method(method: str) -> GraphError:
    return GraphError(405, "invalidRequest", f"{method} is not supported on this resource")
