"""Service Fabric Image Store REST API (``/ImageStore/...``) on the chunkd core.

Wire rules follow the runtime (see docs/servicefabric.md for the full table and chunkd's deliberate
differences): ``api-version`` parsed as a number between the operation's version and the runtime
version, ``timeout`` 1..4294967295 seconds, FabricError JSON on every error, 64-bit numbers as
strings, inclusive ranges, paths with ``/`` or ``\\``, ``$`` segments starting the action.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from chunkd.auth.authenticator import Authenticator, Unauthenticated
from chunkd.auth.permissions import IMAGESTORE_ADMIN
from chunkd.core import errors
from chunkd.core.body import ClientGone
from chunkd.core.engine import Engine
from chunkd.core.models import ObjectInfo, Session, SessionState
from chunkd.core.principal import Principal
from chunkd.protocols._errors import lookup, retry_after
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
from chunkd.protocols._routing import ANY_PATH
from chunkd.protocols.servicefabric_wire import (
    RUNTIME_VERSION,
    FabricError,
    check_api_version,
    check_content_length,
    content_key,
    fabric_error_response,
    parse_content_range,
    parse_session_id,
    parse_timeout,
    reject_reserved,
    split_action,
)

log = logging.getLogger("chunkd.servicefabric")

NAMESPACE = "imagestore"
FAMILY = "servicefabric"
CLUSTER_VERSION = f"{RUNTIME_VERSION}.1571.9590"
PAGE_SIZE = 1000
MAX_COPY_BODY = 1 << 20  # an ImageStoreCopyDescription is a few hundred bytes; never buffer more


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


def _map_error(exc: errors.ChunkdError) -> tuple[int, str]:
    return lookup(ERRORS, exc) or (500, "E_FAIL")


def _store_path(key: str) -> str:
    return key.replace("/", "\\")


def _session_json(session: Session, missing: list[tuple[int, int]]) -> dict[str, Any]:
    length = session.length or 0
    if length == 0 and session.received == 0 and session.state.value == "open":
        missing = []  # chunkd: a 0-byte session needs nothing (the runtime reports [{0,0}] forever)
    return {
        "StoreRelativePath": _store_path(session.key),
        "SessionId": session.id,
        "FileSize": str(length),
        "ModifiedDate": iso_date(session.modified_at),
        "ExpectedRanges": [{"StartPosition": str(s), "EndPosition": str(e - 1)} for s, e in missing],
    }


def _file_json(info: ObjectInfo) -> dict[str, Any]:
    return {
        "StoreRelativePath": _store_path(info.key),
        "FileVersion": {"EpochDataLossNumber": "0", "VersionNumber": str(info.version),
                        "EpochConfigurationNumber": "0"},
        "FileSize": str(info.size),
        "ModifiedDate": iso_date(info.modified_at),
    }


Handler = Callable[[Request, Principal, str, dict[str, str]], Awaitable[Response]]


class ServiceFabricAPI:
    """Routes for the image store, ``GET /`` and ``GET /$/GetClusterVersion``."""

    def __init__(self, engine: Engine, authenticator: Authenticator) -> None:
        self.engine = engine
        self.auth = authenticator
        # (method, action) -> (handler, minimum api-version, needs admin, takes body)
        self._ops: dict[tuple[str, str], tuple[Handler, float, bool, bool]] = {
            ("PUT", "UploadChunk"): (self.upload_chunk, 6.0, True, True),
            ("GET", "GetUploadSession"): (self.get_upload_session, 6.0, False, False),
            ("POST", "CommitUploadSession"): (self.commit_session, 6.0, True, False),
            ("DELETE", "DeleteUploadSession"): (self.delete_session, 6.0, True, False),
            ("POST", "Copy"): (self.copy, 6.0, True, False),
            ("GET", "FolderSize"): (self.folder_size, 6.5, False, False),
            ("GET", "Info"): (self.info, 6.5, False, False),
            ("GET", "Content"): (self.download, 6.0, False, False),
            ("HEAD", "Content"): (self.download, 6.0, False, False),
            ("PUT", ""): (self.upload_file, 6.0, True, True),
            ("GET", ""): (self.get_content, 6.0, False, False),
            ("DELETE", ""): (self.delete_content, 6.0, True, False),
        }

    @property
    def routes(self) -> list[BaseRoute]:
        methods = ["GET", "PUT", "POST", "DELETE", "HEAD"]
        return [
            Route("/", self.root, methods=["GET", "HEAD"]),
            Route("/$/GetClusterVersion", self.cluster_version, methods=["GET"]),
            Route("/ImageStore", self.dispatch, methods=methods),
            Route(f"/ImageStore/{{rest:{ANY_PATH}}}", self.dispatch, methods=methods),
        ]

    async def root(self, request: Request) -> Response:
        return JSONResponse({"name": "chunkd", "imageStore": "/ImageStore", "version": CLUSTER_VERSION})

    async def cluster_version(self, request: Request) -> Response:
        return JSONResponse({"Version": CLUSTER_VERSION})

    # -- dispatch ---------------------------------------------------------------------------------
    async def dispatch(self, request: Request) -> Response:
        try:
            return await self._dispatch(request)
        except FabricError as exc:
            response = fabric_error_response(exc.status, exc.code, exc.message, exc.headers)
            if exc.status == 401:
                response.headers["WWW-Authenticate"] = 'Bearer realm="chunkd"'
            return response
        except ClientGone:
            return fabric_error_response(400, "E_INVALIDARG", "the client closed the connection mid-body")
        except errors.ChunkdError as exc:
            status, code = _map_error(exc)
            return fabric_error_response(status, code, exc.message, retry_after(status, exc))
        except TimeoutError:
            return fabric_error_response(504, "FABRIC_E_TIMEOUT", "the operation did not finish in time")
        except Exception:
            log.exception("unexpected error in %s %s", request.method, request.url.path)
            return fabric_error_response(500, "E_FAIL", "internal error")

    async def _dispatch(self, request: Request) -> Response:
        # scope["path"] is percent-decoded; request.url.path would re-quote "\\", "?" and "#"
        rest = request.scope["path"][len("/ImageStore"):]
        content, action = split_action(rest)
        method = "GET" if request.method == "HEAD" and action != "Content" else request.method
        op = self._ops.get((method, action))
        if op is None:
            raise FabricError(400, "E_INVALIDARG", f"unknown operation {request.method} {action or 'content'}")
        handler, min_version, needs_admin, takes_body = op
        query = first_query(request.scope)
        check_api_version(query.get("api-version"), min_version)
        timeout = parse_timeout(query.get("timeout"))
        principal = self._authenticate(request, needs_admin)
        if takes_body:  # bodies take as long as the client needs; timeout bounds only server work
            return await handler(request, principal, content, query)
        with anyio.fail_after(timeout):
            return await handler(request, principal, content, query)

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
        # the first chunk opens the session in the same transaction that claims its range
        create = self.engine.new_session(principal, FAMILY, NAMESPACE, key, total, session_id=session_id)
        await self.engine.write_range(session_id, principal, start, end, request_body(request), create=create)
        return Response(status_code=200)

    async def get_upload_session(self, request: Request, principal: Principal, content: str,
                                 query: dict[str, str]) -> Response:
        if content.strip("/\\"):
            key = content_key(content)
            found = await self.engine.sessions_for_target(NAMESPACE, key)
            sessions = [s for s in found if s.family == FAMILY]
        else:
            session_id = parse_session_id(query.get("session-id"), "FABRIC_E_INVALID_UPLOAD_SESSION_ID")
            session = await self.engine.get_session(session_id)
            if session.family != FAMILY:
                raise errors.SessionNotFound()
            sessions = [session]
        body = [_session_json(s, await self.engine.missing(s)) for s in sessions]
        return JSONResponse({"UploadSessions": body})

    async def commit_session(self, request: Request, principal: Principal, content: str,
                             query: dict[str, str]) -> Response:
        session_id = parse_session_id(query.get("session-id"), "E_INVALIDARG")
        try:
            session = await self.engine.get_session(session_id, principal=principal)
            if session.family != FAMILY:
                raise errors.SessionNotFound()
            if session.state is SessionState.OPEN:
                await self._check_file_target(session.key)
            await self.engine.commit(session_id, principal)
        except (errors.SessionNotFound, errors.SessionGone) as exc:
            raise FabricError(400, "E_INVALIDARG", "no upload session with this id") from exc
        return Response(status_code=200)

    async def _check_file_target(self, key: str) -> None:
        """Refuse a commit onto a folder, or below a file, before the session starts committing (a
        commit that fails half-way would leave the session stuck in ``committing``)."""
        parts = key.split("/")
        conflict = await self.engine.is_folder(NAMESPACE, key)
        for i in range(1, len(parts)):
            if conflict:
                break
            try:
                await self.engine.stat_object(NAMESPACE, "/".join(parts[:i]))
                conflict = True
            except errors.ObjectNotFound:
                pass
        if conflict:
            raise FabricError(400, "FABRIC_E_INVALID_DIRECTORY",
                              f"{_store_path(key)} is a folder, or lies below a file, in the image store")

    async def delete_session(self, request: Request, principal: Principal, content: str,
                             query: dict[str, str]) -> Response:
        session_id = parse_session_id(query.get("session-id"), "E_INVALIDARG")
        await self.engine.delete_session(session_id, principal)
        return Response(status_code=200)

    # -- content ----------------------------------------------------------------------------------
    async def upload_file(self, request: Request, principal: Principal, content: str,
                          query: dict[str, str]) -> Response:
        key = content_key(content)
        if request.headers.get("content-range"):
            parse_content_range(request.headers["content-range"])  # validated, then ignored (as the runtime)
        await self.engine.put_object(NAMESPACE, key, request_body(request))
        return Response(status_code=200)

    async def get_content(self, request: Request, principal: Principal, content: str,
                          query: dict[str, str]) -> Response:
        key = content_key(content, allow_empty=True)
        if key:
            try:
                info = await self.engine.stat_object(NAMESPACE, key)
            except errors.ObjectNotFound:
                info = None
            if info is not None:
                return JSONResponse({"StoreFiles": [_file_json(info)], "StoreFolders": []})
            if not await self.engine.is_folder(NAMESPACE, key):
                raise errors.ObjectNotFound(f"{_store_path(key)} does not exist in the image store")
        listing = await self.engine.list_folder(NAMESPACE, key)
        entries: list[tuple[str, Any]] = [(f, None) for f in listing.folders]
        entries += [(i.key, i) for i in listing.files]
        entries.sort(key=lambda e: e[0])
        marker = query.get("ContinuationToken", "")
        if marker:
            entries = [e for e in entries if e[0] > marker]
        page, more = entries[:PAGE_SIZE], len(entries) > PAGE_SIZE
        folders = []
        for name, info in page:
            if info is None:
                count = len(await self.engine.walk(NAMESPACE, name))
                folders.append({"StoreRelativePath": _store_path(name), "FileCount": str(count)})
        files = [_file_json(info) for _, info in page if info is not None]
        body: dict[str, Any] = {"StoreFiles": files, "StoreFolders": folders}
        if more:
            body["ContinuationToken"] = page[-1][0]
        return JSONResponse(body)

    async def delete_content(self, request: Request, principal: Principal, content: str,
                             query: dict[str, str]) -> Response:
        key = content_key(content)
        reject_reserved(key)
        await self.engine.delete_object(NAMESPACE, key)
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
        src = content_key(desc["RemoteSource"])
        dst = content_key(desc["RemoteDestination"])
        reject_reserved(dst)
        skip_files = desc.get("SkipFiles") or []
        if not isinstance(skip_files, list) or not all(isinstance(s, str) for s in skip_files):
            raise FabricError(400, "E_INVALIDARG", "SkipFiles must be a list of file names")
        if desc.get("CheckMarkFile") and await self.engine.is_folder(NAMESPACE, src):
            try:
                await self.engine.stat_object(NAMESPACE, f"{src}/_.dir")
            except errors.ObjectNotFound:
                return Response(status_code=200)  # source folder not marked complete: nothing copied
        await self.engine.copy_object(NAMESPACE, src, dst, frozenset(skip_files))
        return Response(status_code=200)

    async def folder_size(self, request: Request, principal: Principal, content: str,
                          query: dict[str, str]) -> Response:
        key = content_key(content, allow_empty=True)
        if key and not await self.engine.is_folder(NAMESPACE, key):
            raise errors.ObjectNotFound(f"{_store_path(key)} is not a folder in the image store")
        files = await self.engine.walk(NAMESPACE, key)
        return JSONResponse({"StoreRelativePath": _store_path(key), "FolderSize": str(sum(f.size for f in files))})

    async def info(self, request: Request, principal: Principal, content: str,
                   query: dict[str, str]) -> Response:
        usage = await self.engine.usage()  # None when the byte store has no capacity figures (object stores)
        files = await self.engine.walk(NAMESPACE, "")
        zero = {"UsedSpace": "0", "FileCount": "0"}
        capacity, available = (usage.capacity, usage.available) if usage else (0, 0)
        staged = {"UsedSpace": str(usage.staged_bytes), "FileCount": str(usage.staged_files)} if usage else zero
        return JSONResponse({
            "DiskInfo": {"Capacity": str(capacity), "AvailableSpace": str(available)},
            "UsedByMetadata": zero,
            "UsedByStaging": staged,
            "UsedByCopy": {"UsedSpace": str(sum(f.size for f in files)), "FileCount": str(len(files))},
            "UsedByRegister": zero,
        })

    async def download(self, request: Request, principal: Principal, content: str,
                       query: dict[str, str]) -> Response:
        key = content_key(content)
        info = await self.engine.stat_object(NAMESPACE, key)
        try:
            return object_response(self.engine, info, request.headers.get("range"), head=request.method == "HEAD")
        except RangeNotSatisfiable as exc:
            raise FabricError(416, "E_INVALIDARG", f"{exc} ({_store_path(key)})", exc.headers) from exc
