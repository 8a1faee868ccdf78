"""The handlers of the print API's declared routes (:mod:`chunkd.protocols.graph_print`): permission check,
request parsing, one service call, Graph JSON. A handler raises GraphError for the request's own faults and
lets the services' PrintFault and core errors through to the route's error handling."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from chunkd.auth.permissions import (
    PRINTERS_CREATE,
    PRINTJOB_CREATE,
    PRINTJOB_READ,
    PRINTJOB_READ_ALL,
    PRINTJOB_READWRITE,
    PRINTJOB_READWRITE_ALL,
)
from chunkd.core.models import Session
from chunkd.core.principal import Principal
from chunkd.protocols import graph_print_wire as wire
from chunkd.protocols._graph import GraphError, json_object, require
from chunkd.protocols._http import object_response, public_base, request_body
from chunkd.services.print_records import Job

if TYPE_CHECKING:
    from chunkd.protocols.graph_print import GraphPrintAPI

# Which permissions allow what (seeds 001/004 and the v1.0 pages). Only the ".All" ones reach other users' jobs.
READ = (PRINTJOB_READ, PRINTJOB_READWRITE, PRINTJOB_READ_ALL, PRINTJOB_READWRITE_ALL)
CREATE = (PRINTJOB_CREATE, PRINTJOB_READWRITE, PRINTJOB_READWRITE_ALL)  # create job, createUploadSession, start
READWRITE = (PRINTJOB_READWRITE, PRINTJOB_READWRITE_ALL)  # the seeds' session create/delete/segments
ANY_PRINT = tuple(dict.fromkeys(READ + CREATE))
TENANT_WIDE = frozenset({PRINTJOB_READ_ALL, PRINTJOB_READWRITE_ALL})


def with_context(request: Request, entity: str, body: dict[str, Any], version: str = "v1.0") -> dict[str, Any]:
    return {"@odata.context": f"{public_base(request)}/{version}/$metadata#{entity}", **body}


@dataclass(frozen=True)
class Call:
    """One request of the print API: the API (its services), the request, its caller, its API version and
    its path parameters."""

    api: GraphPrintAPI
    request: Request
    principal: Principal
    version: str
    params: Mapping[str, str]

    def ok(self, body: dict[str, Any], entity: str, status: int = 200, headers: dict[str, str] | None = None
           ) -> JSONResponse:
        return JSONResponse(with_context(self.request, entity, body, self.version), status_code=status,
                            headers=headers)

    async def job(self, allowed: tuple[str, ...], what: str) -> Job:
        """The job of the path, after the permission check for ``allowed``."""
        granted = require(self.principal, allowed, what)
        return await self.api.jobs.get(self.principal, self.params["pid"], self.params["jid"],
                                       tenant_wide=bool(granted & TENANT_WIDE))

    async def session_response(self, session: Session, status: int) -> Response:
        body = wire.print_upload_session_json(session, await self.api.documents.missing(session))
        return self.ok(body, "microsoft.graph.printUploadSession", status, {"ETag": wire.etag(session)})


Handler = Callable[[Call], Awaitable[Response]]


# -- printers ---------------------------------------------------------------------------------------
async def list_printers(call: Call) -> Response:
    require(call.principal, ANY_PRINT, "listing printers")
    collection = call.params["collection"]
    render = wire.printer_json if collection == "printers" else wire.share_json
    return call.ok({"value": [render(p) for p in await call.api.printers.visible_to(call.principal)]}, collection)


async def get_printer(call: Call) -> Response:
    require(call.principal, ANY_PRINT, "reading a printer")
    printer = await call.api.printers.get(call.principal, call.params["pid"])
    collection = call.params["collection"]
    render = wire.printer_json if collection == "printers" else wire.share_json
    return call.ok(render(printer), f"{collection}/$entity")


async def register_printer(call: Call) -> Response:
    """chunkd's admin route: ``POST /{version}/print/printers {"displayName", "contentTypes"?}``."""
    if not call.principal.has_any(PRINTERS_CREATE):
        raise GraphError(403, "accessDenied", f"registering printers needs {PRINTERS_CREATE}")
    body = await json_object(call.request)
    name = body.get("displayName")
    if not isinstance(name, str) or not name.strip():
        raise GraphError(400, "invalidRequest", "displayName is required")
    types = body.get("contentTypes")
    if types is not None and (not isinstance(types, list) or not types
                              or not all(isinstance(t, str) and t.strip() for t in types)):
        raise GraphError(400, "invalidRequest", "contentTypes must be a non-empty list of MIME types")
    printer = await call.api.printers.register(call.principal, name.strip(), types)
    return call.ok(wire.printer_json(printer), "printers/$entity", 201)


# -- jobs -------------------------------------------------------------------------------------------
async def list_jobs(call: Call) -> Response:
    granted = require(call.principal, READ, "listing print jobs")
    jobs = await call.api.jobs.of_printer(call.principal, call.params["pid"], tenant_wide=bool(granted & TENANT_WIDE))
    docs = call.api.documents
    return call.ok({"value": [wire.job_json(j, await docs.of_job(j)) for j in jobs]}, "jobs")


async def create_job(call: Call) -> Response:
    require(call.principal, CREATE, "creating a print job")
    await call.api.printers.get(call.principal, call.params["pid"])  # 404 before the body is read
    body = await json_object(call.request)
    config = body.get("configuration")
    if config is not None and not isinstance(config, dict):
        raise GraphError(400, "invalidRequest", "configuration must be an object")
    job, docs = await call.api.jobs.create(call.principal, call.params["pid"], config)
    return call.ok(wire.job_json(job, docs), "jobs/$entity", 201)


async def get_job(call: Call) -> Response:
    job = await call.job(READ, "reading a print job")
    return call.ok(wire.job_json(job, await call.api.documents.of_job(job)), "jobs/$entity")


async def start_job(call: Call) -> Response:
    granted = require(call.principal, CREATE, "starting a print job")
    job = await call.api.jobs.start(call.principal, call.params["pid"], call.params["jid"],
                                    tenant_wide=bool(granted & TENANT_WIDE))
    return call.ok(wire.job_status(job), "microsoft.graph.printJobStatus")


# -- documents --------------------------------------------------------------------------------------
async def list_documents(call: Call) -> Response:
    job = await call.job(READ, "listing print documents")
    return call.ok({"value": [wire.document_json(d) for d in await call.api.documents.of_job(job)]}, "documents")


async def get_document(call: Call) -> Response:
    job = await call.job(READ, "reading a print document")
    doc = await call.api.documents.get(job, call.params["did"])
    return call.ok(wire.document_json(doc), "documents/$entity")


async def download(call: Call) -> Response:
    job = await call.job(READ, "downloading a print document")
    doc, info = await call.api.documents.uploaded(job, call.params["did"])
    return object_response(call.api.engine, info, call.request.headers.get("range"),
                           media_type=doc.content_type or "application/octet-stream",
                           head=call.request.method == "HEAD")


# -- upload sessions --------------------------------------------------------------------------------
async def _open(call: Call, job: Job, props: dict[str, Any]) -> Session:
    printer = await call.api.printers.get(call.principal, job.printer_id)
    size, content_type, name = wire.upload_properties(props, printer.content_types, call.api.engine.config.max_size)
    return await call.api.documents.open_session(call.principal, job, call.params["did"], size, content_type, name)


async def create_upload_session(call: Call) -> Response:
    job = await call.job(CREATE, "creating an upload session")
    await call.api.documents.get(job, call.params["did"])
    body = await json_object(call.request)
    props = body.get("properties")
    if not isinstance(props, dict):
        raise GraphError(400, "invalidRequest", "properties (documentName, contentType, size) are required")
    session = await _open(call, job, props)
    body = wire.upload_session_json(session, await call.api.documents.missing(session),
                                    call.api.upload_url_for(call.request, session))
    return call.ok(body, "microsoft.graph.uploadSession")


async def put_upload_session(call: Call) -> Response:
    job = await call.job(READWRITE, "creating an upload session")
    await call.api.documents.get(job, call.params["did"])
    session = await _open(call, job, await json_object(call.request))
    return await call.session_response(session, 200)


async def get_upload_session(call: Call) -> Response:
    job = await call.job(READ, "reading an upload session")
    return await call.session_response(await call.api.documents.session_of(job, call.params["did"]), 200)


async def delete_upload_session(call: Call) -> Response:
    job = await call.job(READWRITE, "deleting an upload session")
    session = await call.api.documents.held_session(job, call.params["did"], call.principal, deleting=True)
    wire.check_if_match(call.request.headers.get("if-match"), session)
    await call.api.documents.cancel(session)
    return Response(status_code=204)


async def upload_segment(call: Call) -> Response:
    job = await call.job(READWRITE, "uploading document data")
    docs = call.api.documents
    session = await docs.held_session(job, call.params["did"], call.principal, deleting=False)
    wire.check_if_match(call.request.headers.get("if-match"), session)
    assert session.length is not None
    start, end = wire.parse_content_range(call.request.headers.get("content-range"),
                                          call.request.headers.get("content-length"), session.length)
    written = await docs.write(session.id, call.principal, start, end, request_body(call.request))
    if written.document is not None:
        return await call.session_response(await docs.session(session.id), 201)
    return await call.session_response(written.session, 202)
