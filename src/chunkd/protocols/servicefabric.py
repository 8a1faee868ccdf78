"""Service Fabric Image Store REST API (``/ImageStore/...``) on the chunkd core: the HTTP side.

One route per operation: ``/ImageStore/{content}$/{Action}`` (the content parameter is empty in the bare
``/ImageStore/$/{Action}`` forms, see :class:`~chunkd.protocols.servicefabric_wire.ActionPrefixConvertor`)
and ``/ImageStore/{content}`` (and ``/ImageStore``, the root). Any other path under ``/ImageStore`` is an
unknown operation (400), a method outside the API 405. ``api-version``, ``timeout`` and authentication
are checked in one place (:meth:`ServiceFabricAPI._serve`) before an operation runs; the
operations translate requests into calls of :class:`chunkd.services.image_store.ImageStore` and format
its answers. Wire rules follow the runtime (docs/servicefabric.md lists them and chunkd's deliberate
differences): FabricError JSON on every error, 64-bit numbers as strings, inclusive ranges, paths with
``/`` or ``\\``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from chunkd.auth.authenticator import Authenticator, Unauthenticated
from chunkd.auth.permissions import IMAGESTORE_ADMIN
from chunkd.core import errors
from chunkd.core.body import ClientGone
from chunkd.core.engine import Engine
from chunkd.core.models import ObjectInfo
from chunkd.core.principal import Principal
from chunkd.protocols._errors import lookup, retry_after
from chunkd.protocols._hot import Bodiless, HotRoute, request_app
from chunkd.protocols._http import (
    BodyTooLarge,
    RangeNotSatisfiable,
    capped_body,
    first_query,
    iso_date,
    object_response,
    request_body,
)
from chunkd.protocols._parse import JsonError, loads_json
from chunkd.protocols._routing import ANY_PATH, ExactRoute
from chunkd.protocols.servicefabric_wire import (
    ACTION_PREFIX,
    CONTENT_PATH,
    RUNTIME_VERSION,
    FabricError,
    check_api_version,
    check_content_length,
    content_key,
    fabric_error_response,
    parse_content_range,
    parse_session_id,
    parse_timeout,
)
from chunkd.services.image_store import (
    ContentPage,
    CopyRequest,
    FaultCode,
    ImageStore,
    ImageStoreFault,
    UploadSession,
    store_path,
)

log = logging.getLogger("chunkd.servicefabric")

CLUSTER_VERSION = f"{RUNTIME_VERSION}.1571.9590"
MAX_COPY_BODY = 1 << 20  # an ImageStoreCopyDescription is a few hundred bytes; never buffer more
METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "HEAD"})  # the API's; others are 405
# what the catch-all routes take (Starlette has no "any method"); a method beyond these matches no route
# fully, and Starlette answers 405 itself
HTTP_METHODS = [*sorted(METHODS), "OPTIONS", "PATCH", "TRACE"]
_ACTION = f"/ImageStore/{{content:{ACTION_PREFIX}}}$/"
_EMPTY = (b"content-length", b"0")


# core error -> (status, code); looked up along the exception's MRO, most specific first
ERRORS: dict[type[errors.ChunkdError], tuple[int, str]] = {
    errors.InvalidPath: (400, "E_INVALIDARG"),
    errors.PathConflict: (400, "FABRIC_E_INVALID_DIRECTORY"),
    errors.InvalidRange: (400, "FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE"),
    errors.LengthMismatch: (400, "E_INVALIDARG"),
    errors.InvalidInput: (400, "E_INVALIDARG"),
    errors.SessionNotFound: (404, "FABRIC_E_FILE_NOT_FOUND"),
    errors.SessionGone: (404, "FABRIC_E_FILE_NOT_FOUND"),
    errors.ObjectNotFound: (404, "FABRIC_E_FILE_NOT_FOUND"),
    errors.SessionConflict: (409, "FABRIC_E_UPLOAD_SESSION_ID_CONFLICT"),
    errors.SessionIncomplete: (400, "E_INVALIDARG"),
    errors.PermissionDenied: (403, "E_ACCESSDENIED"),
    errors.TooLarge: (413, "FABRIC_E_VALUE_TOO_LARGE"),
    errors.RangeBusy: (503, "FABRIC_E_SERVICE_TOO_BUSY"),
    errors.WriteInterrupted: (503, "FABRIC_E_SERVICE_TOO_BUSY"),
    errors.Conflict: (503, "FABRIC_E_SERVICE_TOO_BUSY"),
    errors.NotFound: (404, "FABRIC_E_FILE_NOT_FOUND"),
    ClientGone: (400, "E_INVALIDARG"),
    # the bytes live in another server's data directory (or were lost): another node may hold them
    errors.PiecesMissing: (503, "FABRIC_E_SERVICE_TOO_BUSY"),
    errors.StorageFull: (503, "FABRIC_E_SERVICE_TOO_BUSY"),  # msrest clients retry 503 with back-off
    errors.StorageUnavailable: (503, "FABRIC_E_SERVICE_TOO_BUSY"),
}

# the image store service's refusal -> status (the code is the answer's Error.Code)
FAULTS: dict[FaultCode, int] = {
    FaultCode.INVALID_ARGUMENT: 400,
    FaultCode.INVALID_DIRECTORY: 400,
    FaultCode.RESERVED_DIRECTORY: 400,
}


def _session_json(upload: UploadSession) -> dict[str, Any]:
    session = upload.session
    return {
        "StoreRelativePath": store_path(session.key),
        "SessionId": session.id,
        "FileSize": str(session.length or 0),
        "ModifiedDate": iso_date(session.modified_at),
        "ExpectedRanges": [{"StartPosition": str(s), "EndPosition": str(e - 1)} for s, e in upload.missing],
    }


def _file_json(info: ObjectInfo) -> dict[str, Any]:
    return {
        "StoreRelativePath": store_path(info.key),
        "FileVersion": {"EpochDataLossNumber": "0", "VersionNumber": str(info.version),
                        "EpochConfigurationNumber": "0"},
        "FileSize": str(info.size),
        "ModifiedDate": iso_date(info.modified_at),
    }


def _page_json(page: ContentPage) -> dict[str, Any]:
    body: dict[str, Any] = {
        "StoreFiles": [_file_json(f) for f in page.files],
        "StoreFolders": [{"StoreRelativePath": store_path(f.key), "FileCount": str(f.file_count)}
                         for f in page.folders],
    }
    if page.continuation:
        body["ContinuationToken"] = page.continuation
    return body


def _error_response(exc: Exception, request: Request) -> Response:
    """The FabricError answer to anything an operation raised."""
    if isinstance(exc, FabricError):
        response = fabric_error_response(exc.status, exc.code, exc.message, exc.headers)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="chunkd"'
        return response
    if isinstance(exc, ImageStoreFault):
        return fabric_error_response(FAULTS[exc.code], exc.code.value, exc.message)
    if isinstance(exc, ClientGone):
        return fabric_error_response(400, "E_INVALIDARG", "the client closed the connection mid-body")
    if isinstance(exc, errors.ChunkdError):
        status, code = lookup(ERRORS, exc) or (500, "E_FAIL")
        return fabric_error_response(status, code, exc.message, retry_after(status, exc))
    if isinstance(exc, TimeoutError):
        return fabric_error_response(504, "FABRIC_E_TIMEOUT", "the operation did not finish in time")
    log.error("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
    return fabric_error_response(500, "E_FAIL", "internal error")


Handler = Callable[[Request, Principal, str, dict[str, str]], Awaitable[Response]]


class ServiceFabricAPI:
    """Routes for the image store, ``GET /`` and ``GET /$/GetClusterVersion``."""

    def __init__(self, engine: Engine, authenticator: Authenticator) -> None:
        self.engine = engine
        self.auth = authenticator
        self.store = ImageStore(engine)
        # built once: the hot route (UploadChunk past the router) matches this same object
        self._upload_chunk = self._op("PUT", _ACTION + "UploadChunk", self.upload_chunk, admin=True, body=True)

    @property
    def hot_routes(self) -> list[HotRoute]:
        """``PUT /ImageStore/{content}$/UploadChunk`` (a chunk) past the router."""
        async def endpoint(request: Request) -> Response:
            return await self._serve(request, self.upload_chunk, 6.0, True, True)
        return [HotRoute("PUT", "/ImageStore/", (self._upload_chunk,), request_app(endpoint), "/UploadChunk")]

    @property
    def routes(self) -> list[BaseRoute]:
        action = _ACTION
        # a GET route serves HEAD too (Starlette adds it): HEAD is GET everywhere, and only Content
        # answers it without a body
        return [
            Route("/", self.root, methods=["GET", "HEAD"]),
            Route("/$/GetClusterVersion", self.cluster_version, methods=["GET"]),
            self._upload_chunk,
            self._op("GET", action + "GetUploadSession", self.get_upload_session),
            self._op("POST", action + "CommitUploadSession", self.commit_session, admin=True),
            self._op("DELETE", action + "DeleteUploadSession", self.delete_session, admin=True),
            self._op("POST", action + "Copy", self.copy, admin=True),
            self._op("GET", action + "FolderSize", self.folder_size, version=6.5),
            self._op("GET", action + "Info", self.info, version=6.5),
            self._op("GET", action + "Content", self.download),
            # the root (contentPath "") is /ImageStore and /ImageStore/
            *[route for path in ("/ImageStore", f"/ImageStore/{{content:{CONTENT_PATH}}}") for route in (
                self._op("PUT", path, self.upload_file, admin=True, body=True),
                self._op("GET", path, self.get_content),
                self._op("DELETE", path, self.delete_content, admin=True))],
            # everything else under /ImageStore: unknown operations (400), methods outside the API (405)
            Route("/ImageStore", self.unknown_operation, methods=HTTP_METHODS),
            Route(f"/ImageStore/{{rest:{ANY_PATH}}}", self.unknown_operation, methods=HTTP_METHODS),
        ]

    async def root(self, request: Request) -> Response:
        return JSONResponse({"name": "chunkd", "imageStore": "/ImageStore", "version": CLUSTER_VERSION})

    async def cluster_version(self, request: Request) -> Response:
        return JSONResponse({"Version": CLUSTER_VERSION})

    async def unknown_operation(self, request: Request) -> Response:
        if request.method not in METHODS:
            raise HTTPException(405, headers={"Allow": ", ".join(sorted(METHODS))})  # the app's family answer
        shown = request.scope["path"][:200]
        return fabric_error_response(400, "E_INVALIDARG", f"unknown operation {request.method} {shown!r}")

    # -- the checks every operation shares --------------------------------------------------------
    def _op(self, method: str, path: str, handler: Handler, *, version: float = 6.0, admin: bool = False,
            body: bool = False) -> Route:
        """The route of one operation: ``handler`` runs once api-version (at least ``version``), timeout and
        credentials (the admin role for ``admin``) pass."""
        async def endpoint(request: Request) -> Response:
            return await self._serve(request, handler, version, admin, body)
        return ExactRoute(path, endpoint, methods=[method])

    async def _serve(self, request: Request, handler: Handler, min_version: float, needs_admin: bool,
                     takes_body: bool) -> Response:
        try:
            query = first_query(request.scope)
            check_api_version(query.get("api-version"), min_version)
            timeout = parse_timeout(query.get("timeout"))
            principal = self._authenticate(request, needs_admin)
            # path parameters come from scope["path"], which is percent-decoded (request.url.path would
            # re-quote "\\", "?" and "#")
            content = request.path_params.get("content", "")
            if takes_body:  # bodies take as long as the client needs; timeout bounds only server work
                return await handler(request, principal, content, query)
            with anyio.fail_after(timeout):
                return await handler(request, principal, content, query)
        except Exception as exc:
            return _error_response(exc, request)

    def _authenticate(self, request: Request, needs_admin: bool) -> Principal:
        try:
            principal = self.auth.authenticate(request.headers, request.scope)
        except Unauthenticated as exc:
            raise FabricError(401, "E_ACCESSDENIED", str(exc)) from exc
        if needs_admin and not principal.has_any(IMAGESTORE_ADMIN):
            raise FabricError(403, "E_ACCESSDENIED", f"writing to the image store needs the {IMAGESTORE_ADMIN} role")
        return principal

    # -- upload sessions --------------------------------------------------------------------------
    async def upload_chunk(self, request: Request, principal: Principal, content: str,
                           query: dict[str, str]) -> Response:
        session_id = parse_session_id(query.get("session-id"), "FABRIC_E_INVALID_UPLOAD_SESSION_ID")
        key = content_key(content)
        start, end, total = parse_content_range(request.headers.get("content-range"))
        check_content_length(request.headers, end - start)
        await self.store.upload_chunk(principal, session_id, key, start, end, total, request_body(request))
        return Bodiless(200, [_EMPTY])  # what Response(status_code=200) sends, without building it

    async def get_upload_session(self, request: Request, principal: Principal, content: str,
                                 query: dict[str, str]) -> Response:
        if content.strip("/\\"):
            sessions = await self.store.sessions_for(content_key(content))
        else:
            session_id = parse_session_id(query.get("session-id"), "FABRIC_E_INVALID_UPLOAD_SESSION_ID")
            sessions = [await self.store.session(session_id)]
        return JSONResponse({"UploadSessions": [_session_json(s) for s in sessions]})

    async def commit_session(self, request: Request, principal: Principal, content: str,
                             query: dict[str, str]) -> Response:
        await self.store.commit(parse_session_id(query.get("session-id"), "E_INVALIDARG"), principal)
        return Response(status_code=200)

    async def delete_session(self, request: Request, principal: Principal, content: str,
                             query: dict[str, str]) -> Response:
        await self.store.delete_session(parse_session_id(query.get("session-id"), "E_INVALIDARG"), principal)
        return Response(status_code=200)

    # -- content ----------------------------------------------------------------------------------
    async def upload_file(self, request: Request, principal: Principal, content: str,
                          query: dict[str, str]) -> Response:
        key = content_key(content)
        if request.headers.get("content-range"):
            parse_content_range(request.headers["content-range"])  # validated, then ignored (as the runtime)
        await self.store.upload_file(key, request_body(request))
        return Response(status_code=200)

    async def get_content(self, request: Request, principal: Principal, content: str,
                          query: dict[str, str]) -> Response:
        page = await self.store.content(content_key(content, allow_empty=True), query.get("ContinuationToken", ""))
        return JSONResponse(_page_json(page))

    async def delete_content(self, request: Request, principal: Principal, content: str,
                             query: dict[str, str]) -> Response:
        await self.store.delete(content_key(content))
        return Response(status_code=200)

    async def copy(self, request: Request, principal: Principal, content: str,
                   query: dict[str, str]) -> Response:
        try:
            desc = loads_json(await capped_body(request, MAX_COPY_BODY) or b"null")
        except BodyTooLarge as exc:
            raise FabricError(413, "FABRIC_E_VALUE_TOO_LARGE", f"a copy description is at most {MAX_COPY_BODY} "
                              "bytes") from exc
        except JsonError as exc:
            raise FabricError(400, "E_INVALIDARG", f"the body is not valid JSON: {exc}") from exc
        if not isinstance(desc, dict) or not isinstance(desc.get("RemoteSource"), str) \
                or not isinstance(desc.get("RemoteDestination"), str):
            raise FabricError(400, "E_INVALIDARG", "RemoteSource and RemoteDestination are required strings")
        source, destination = content_key(desc["RemoteSource"]), content_key(desc["RemoteDestination"])
        skip_files = desc.get("SkipFiles") or []
        if not isinstance(skip_files, list) or not all(isinstance(s, str) for s in skip_files):
            raise FabricError(400, "E_INVALIDARG", "SkipFiles must be a list of file names")
        await self.store.copy(CopyRequest(source, destination, frozenset(skip_files),
                                          bool(desc.get("CheckMarkFile"))))
        return Response(status_code=200)

    async def folder_size(self, request: Request, principal: Principal, content: str,
                          query: dict[str, str]) -> Response:
        key = content_key(content, allow_empty=True)
        size = await self.store.folder_size(key)
        return JSONResponse({"StoreRelativePath": store_path(key), "FolderSize": str(size)})

    async def info(self, request: Request, principal: Principal, content: str,
                   query: dict[str, str]) -> Response:
        info = await self.store.info()
        zero = {"UsedSpace": "0", "FileCount": "0"}
        return JSONResponse({
            "DiskInfo": {"Capacity": str(info.capacity), "AvailableSpace": str(info.available)},
            "UsedByMetadata": zero,
            "UsedByStaging": {"UsedSpace": str(info.staged_bytes), "FileCount": str(info.staged_files)},
            "UsedByCopy": {"UsedSpace": str(info.copied_bytes), "FileCount": str(info.copied_files)},
            "UsedByRegister": zero,
        })

    async def download(self, request: Request, principal: Principal, content: str,
                       query: dict[str, str]) -> Response:
        key = content_key(content)
        info = await self.store.file(key)
        try:
            return object_response(self.engine, info, request.headers.get("range"), head=request.method == "HEAD")
        except RangeNotSatisfiable as exc:
            raise FabricError(416, "E_INVALIDARG", f"{exc} ({store_path(key)})", exc.headers) from exc
