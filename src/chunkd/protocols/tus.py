"""tus 1.0 resumable uploads (``/files/``) on the chunkd core, with every extension: the HTTP side.

This module translates requests (headers, status codes, ``Location``) into calls of the tus service,
:class:`chunkd.services.tus_uploads.TusUploads`, which holds the rules of creation, appending, deferred
length and concatenation. Wire formats and the error table are in :mod:`chunkd.protocols.tus_wire`.
See docs/tus.md.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import ASGIApp

from chunkd.auth.authenticator import Authenticator, Unauthenticated
from chunkd.auth.permissions import TUS_READ, TUS_READWRITE
from chunkd.core import errors
from chunkd.core.body import Body, ClientGone
from chunkd.core.checksum import verified
from chunkd.core.engine import Engine
from chunkd.core.models import SessionState
from chunkd.core.principal import Principal
from chunkd.protocols._hot import Bodiless, HotRoute, request_app
from chunkd.protocols._http import RangeNotSatisfiable, http_date, object_response, public_base, request_body
from chunkd.protocols.ietf_resumable import IetfDraftAPI, requested_version
from chunkd.protocols.tus_wire import (
    CHECKSUM_ALGORITHMS,
    EXTENSIONS,
    OFFSET_STREAM,
    TUS_VERSION,
    UPLOAD_ID,
    TusError,
    content_disposition,
    decoded_text,
    error_response,
    format_metadata,
    map_core_error,
    map_fault,
    parse_checksum,
    parse_concat,
    parse_metadata,
    parse_uint,
    safe_media_type,
)
from chunkd.services.ietf_uploads import Limits
from chunkd.services.tus_records import Concat, NewUpload, TusFault, Upload
from chunkd.services.tus_uploads import TusUploads

log = logging.getLogger("chunkd.tus")

PREFIX = "/files"
METHODS = ["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS", "PUT"]
ALLOW_HEADERS = ["Authorization", "Origin", "X-Requested-With", "X-Request-ID", "X-HTTP-Method-Override",
                 "Content-Type", "Upload-Length", "Upload-Offset", "Tus-Resumable", "Upload-Metadata",
                 "Upload-Defer-Length", "Upload-Concat", "Upload-Checksum", "Upload-Complete",
                 "Upload-Draft-Interop-Version", "Upload-Incomplete", "Content-Digest", "Repr-Digest",
                 "Want-Repr-Digest", "Content-Disposition"]
EXPOSE_HEADERS = ["Upload-Offset", "Location", "Upload-Length", "Tus-Version", "Tus-Resumable", "Tus-Max-Size",
                  "Tus-Extension", "Tus-Checksum-Algorithm", "Upload-Metadata", "Upload-Defer-Length",
                  "Upload-Concat", "Upload-Expires", "Upload-Complete", "Upload-Draft-Interop-Version",
                  "Upload-Incomplete", "Upload-Limit", "Accept-Patch", "Repr-Digest"]
_TUS_RESUMABLE = (b"tus-resumable", TUS_VERSION.encode())


@dataclass(frozen=True)
class TusConfig:
    """Front-end settings (built from :class:`chunkd.settings.Settings` in server/app.py)."""

    max_size: int = 1 << 40  # Tus-Max-Size
    expiration: float = 86400.0  # idle lifetime of an upload, seconds
    cors_origins: tuple[str, ...] = ()  # () = no CORS headers; ("*",) = any origin
    # the IETF draft's optional Upload-Limit members (None: no such limit); max-size and max-age are the above
    min_size: int | None = None
    max_append_size: int | None = None
    min_append_size: int | None = None


Handler = Callable[[Request, Principal, str], Awaitable[Response]]


class TusAPI:
    """The tus endpoint ``/files/`` and uploads ``/files/{id}``."""

    def __init__(self, engine: Engine, authenticator: Authenticator, config: TusConfig | None = None) -> None:
        self.engine = engine
        self.auth = authenticator
        self.config = config or TusConfig()
        self.uploads = TusUploads(engine, max_size=self.config.max_size, expiration=self.config.expiration)
        c = self.config
        self.ietf = IetfDraftAPI(self.uploads, authenticator, Limits(c.max_size, c.expiration, c.min_size,
                                                                      c.max_append_size, c.min_append_size))
        self._collection: dict[str, Handler] = {"POST": self.create}
        self._upload: dict[str, Handler] = {"HEAD": self.head, "GET": self.get, "PATCH": self.patch,
                                            "DELETE": self.terminate}

        # built once: the hot route (PATCH of an upload, past the router) matches these same objects
        self._upload_route = Route("/{upload_id}", self.dispatch, methods=METHODS)
        inner: ASGIApp = Router(routes=[Route("/", self.dispatch, methods=METHODS), self._upload_route])
        self._mount = Mount(PREFIX, app=self._cors(inner))

    @property
    def routes(self) -> list[BaseRoute]:
        return [self._mount]

    @property
    def hot_routes(self) -> list[HotRoute]:
        """``PATCH /files/{id}`` (a chunk) past the router, with the same CORS handling as under it."""
        return [HotRoute("PATCH", PREFIX + "/", (self._mount, self._upload_route),
                         self._cors(request_app(self.dispatch)))]

    def _cors(self, app: ASGIApp) -> ASGIApp:
        if not self.config.cors_origins:
            return app
        return CORSMiddleware(app, allow_origins=list(self.config.cors_origins), allow_methods=METHODS,
                              allow_headers=ALLOW_HEADERS, expose_headers=EXPOSE_HEADERS, max_age=86400)

    # -- dispatch ---------------------------------------------------------------------------------
    async def dispatch(self, request: Request) -> Response:
        method = request.headers.get("x-http-method-override", request.method).strip().upper()
        version = requested_version(request)
        if version is not None and method != "GET":  # the IETF draft; a download is the same in both
            return await self.ietf.dispatch(request, method, version)
        try:
            if method == "OPTIONS":
                return self.options()
            return await self._dispatch(request, method)
        except TusError as exc:
            return error_response(exc)
        except TusFault as exc:
            return error_response(map_fault(exc))
        except ClientGone:
            return error_response(TusError(400, "ERR_UNEXPECTED_EOF", "the client closed the connection mid-body"))
        except errors.ChunkdError as exc:
            return error_response(map_core_error(exc))
        except Exception:
            log.exception("unexpected error in %s %s", method, request.url.path)
            return error_response(TusError(500, "ERR_INTERNAL_SERVER_ERROR", "internal error"))

    async def _dispatch(self, request: Request, method: str) -> Response:
        if method != "GET" and request.headers.get("tus-resumable") != TUS_VERSION:
            raise TusError(412, "ERR_UNSUPPORTED_VERSION", f"Tus-Resumable must be {TUS_VERSION}",
                           {"Tus-Version": TUS_VERSION})
        upload_id = request.path_params.get("upload_id", "")
        table = self._upload if upload_id else self._collection
        handler = table.get(method)
        if handler is None:
            raise TusError(405, "ERR_METHOD_NOT_ALLOWED", f"{method} is not allowed here",
                           {"Allow": ", ".join([*table, "OPTIONS"])})
        if upload_id and not UPLOAD_ID.fullmatch(upload_id):
            raise TusError(404, "ERR_UPLOAD_NOT_FOUND", "no such upload")
        principal = self._authenticate(request, write=method in ("POST", "PATCH", "DELETE"))
        return await handler(request, principal, upload_id)

    def _authenticate(self, request: Request, write: bool) -> Principal:
        try:
            principal = self.auth.authenticate(request.headers, request.scope)
        except Unauthenticated as exc:
            raise TusError(401, "ERR_UNAUTHORIZED", str(exc), {"WWW-Authenticate": "Bearer"}) from exc
        needed = (TUS_READWRITE,) if write else (TUS_READWRITE, TUS_READ)
        if not principal.has_any(*needed):
            raise TusError(403, "ERR_FORBIDDEN", f"this needs the {' or '.join(needed)} permission")
        return principal

    def options(self) -> Response:
        return Response(status_code=204, headers={
            "Tus-Resumable": TUS_VERSION, "Tus-Version": TUS_VERSION, "Tus-Extension": ",".join(EXTENSIONS),
            "Tus-Max-Size": str(self.config.max_size), "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS)})

    # -- creation ---------------------------------------------------------------------------------
    async def create(self, request: Request, principal: Principal, _: str) -> Response:
        h = request.headers
        concat, part_ids = parse_concat(h.get("upload-concat"))
        pairs = parse_metadata(h.get("upload-metadata"))
        length = _creation_length(h, bool(part_ids))
        count = parse_uint(h.get("content-length"), "Content-Length", "ERR_INVALID_REQUEST")
        with_body = h.get("content-type", "").split(";")[0].strip().lower() == OFFSET_STREAM and concat != "final"
        checksum = parse_checksum(h.get("upload-checksum")) if with_body else None
        new = NewUpload(length, Concat(concat), tuple(part_ids), tuple(pairs), decoded_text(pairs))
        upload = await self.uploads.create(principal, new, _body(request, checksum) if with_body else None, count)
        headers = self._upload_headers(upload)
        headers["Location"] = self._location(request, upload.id)
        return Response(status_code=201, headers=headers)

    # -- core requests ----------------------------------------------------------------------------
    async def head(self, request: Request, principal: Principal, upload_id: str) -> Response:
        upload = await self.uploads.get(upload_id, principal)
        headers = self._upload_headers(upload)
        headers["Cache-Control"] = "no-store"
        if upload.session.length is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(upload.session.length)
        if upload.fields.metadata:
            headers["Upload-Metadata"] = format_metadata(list(upload.fields.metadata))
        if upload.fields.concat is Concat.PARTIAL:
            headers["Upload-Concat"] = "partial"
        elif upload.fields.concat is Concat.FINAL:
            base = public_base(request)
            headers["Upload-Concat"] = "final;" + " ".join(f"{base}{PREFIX}/{p}" for p in upload.fields.parts)
        return Response(status_code=200, headers=headers)

    async def patch(self, request: Request, principal: Principal, upload_id: str) -> Response:
        h = request.headers
        if h.get("content-type", "").split(";")[0].strip().lower() != OFFSET_STREAM:
            raise TusError(415, "ERR_INVALID_CONTENT_TYPE", f"PATCH needs Content-Type: {OFFSET_STREAM}")
        offset = parse_uint(h.get("upload-offset"), "Upload-Offset", "ERR_INVALID_OFFSET")
        if offset is None:
            raise TusError(400, "ERR_INVALID_OFFSET", "Upload-Offset is required")
        length = parse_uint(h.get("upload-length"), "Upload-Length", "ERR_INVALID_UPLOAD_LENGTH")
        count = parse_uint(h.get("content-length"), "Content-Length", "ERR_INVALID_REQUEST")
        checksum = parse_checksum(h.get("upload-checksum"))
        upload = await self.uploads.append(upload_id, principal, offset, _body(request, checksum), count,
                                           length=length)
        # every chunk's answer: the headers of _upload_headers, encoded straight (Starlette's Response would
        # build the same list from a dict)
        raw = [_TUS_RESUMABLE]
        if upload.offset_known:
            raw.append((b"upload-offset", str(upload.session.received).encode()))
        if upload.session.state is SessionState.OPEN:
            raw.append((b"upload-expires", http_date(upload.session.expires_at).encode()))
        return Bodiless(204, raw)

    async def get(self, request: Request, principal: Principal, upload_id: str) -> Response:
        upload, info = await self.uploads.download(upload_id, principal)
        headers = {"Tus-Resumable": TUS_VERSION, "X-Content-Type-Options": "nosniff"}
        headers["Content-Disposition"] = content_disposition(upload.session.name)
        try:
            return object_response(self.engine, info, request.headers.get("range"), headers,
                                   media_type=safe_media_type(upload.session.content_type))
        except RangeNotSatisfiable as exc:
            raise TusError(416, "ERR_RANGE_NOT_SATISFIABLE", str(exc), exc.headers) from exc

    async def terminate(self, request: Request, principal: Principal, upload_id: str) -> Response:
        await self.uploads.terminate(upload_id, principal)
        return Response(status_code=204, headers={"Tus-Resumable": TUS_VERSION})

    # -- helpers ----------------------------------------------------------------------------------
    def _upload_headers(self, upload: Upload) -> dict[str, str]:
        headers = {"Tus-Resumable": TUS_VERSION}
        if upload.offset_known:
            headers["Upload-Offset"] = str(upload.session.received)
        if upload.session.state is SessionState.OPEN:
            headers["Upload-Expires"] = http_date(upload.session.expires_at)
        return headers

    def _location(self, request: Request, upload_id: str) -> str:
        base = public_base(request)
        return f"{base}{PREFIX}/{upload_id}"


def _creation_length(h: Headers, final: bool) -> int | None:
    """The new upload's Upload-Length, None when deferred (or for a final, whose length is its parts')."""
    length = parse_uint(h.get("upload-length"), "Upload-Length", "ERR_INVALID_UPLOAD_LENGTH")
    deferred = h.get("upload-defer-length")
    if final:
        if length is not None or deferred is not None:
            raise TusError(400, "ERR_INVALID_CONCAT", "a final upload takes no Upload-Length")
    elif length is not None and deferred is not None:
        raise TusError(400, "ERR_AMBIGUOUS_UPLOAD_LENGTH", "send Upload-Length or Upload-Defer-Length, not both")
    elif length is None and deferred is None:
        raise TusError(400, "ERR_INVALID_UPLOAD_LENGTH", "Upload-Length or Upload-Defer-Length: 1 is required")
    elif deferred is not None and deferred.strip() != "1":
        raise TusError(400, "ERR_INVALID_UPLOAD_LENGTH_DEFER", "Upload-Defer-Length must be 1")
    return length


def _body(request: Request, checksum: tuple[str, bytes] | None) -> Body:
    body = request_body(request)
    return verified(body, *checksum) if checksum else body


__all__ = ["TusAPI", "TusConfig"]
