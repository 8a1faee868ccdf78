"""tus 1.0 resumable uploads (``/files/``) on the chunkd core, with every extension.

Uploads are sessions of family ``tus`` whose key is the upload id. PATCH appends at the received
prefix (:meth:`Engine.append_at`); a finished upload is committed (published as object ``tus/<id>``)
and GET downloads it. Partial uploads stay open once complete until a final upload consumes them
(:func:`chunkd.services.tus_concat.concatenate`, which composes without copying). A final declared before its parts are
complete is finished by whichever request completes the last part, or lazily by HEAD/GET of the final,
in any process: the pending link lives in the metadata store as a resource. See docs/tus.md.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

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
from chunkd.core.models import Session, SessionState
from chunkd.core.principal import Principal
from chunkd.protocols._http import RangeNotSatisfiable, http_date, object_response, public_base, request_body
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
    parse_checksum,
    parse_concat,
    parse_metadata,
    parse_uint,
    safe_media_type,
)
from chunkd.services.tus_concat import concatenate

log = logging.getLogger("chunkd.tus")

NAMESPACE = "tus"
FAMILY = "tus"
PREFIX = "/files"
PENDING_FINAL = "tus.pending-final"  # resource: a final upload waiting for the part named in ``parent``
METHODS = ["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS", "PUT"]
ALLOW_HEADERS = ["Authorization", "Origin", "X-Requested-With", "X-Request-ID", "X-HTTP-Method-Override",
                 "Content-Type", "Upload-Length", "Upload-Offset", "Tus-Resumable", "Upload-Metadata",
                 "Upload-Defer-Length", "Upload-Concat", "Upload-Checksum", "Upload-Complete",
                 "Upload-Draft-Interop-Version"]
EXPOSE_HEADERS = ["Upload-Offset", "Location", "Upload-Length", "Tus-Version", "Tus-Resumable", "Tus-Max-Size",
                  "Tus-Extension", "Tus-Checksum-Algorithm", "Upload-Metadata", "Upload-Defer-Length",
                  "Upload-Concat", "Upload-Expires", "Upload-Complete", "Upload-Draft-Interop-Version"]


@dataclass(frozen=True)
class TusConfig:
    """Front-end settings (built from :class:`chunkd.server.config.Settings` in server/app.py)."""

    max_size: int = 1 << 40  # Tus-Max-Size
    expiration: float = 86400.0  # idle lifetime of an upload, seconds
    cors_origins: tuple[str, ...] = ()  # () = no CORS headers; ("*",) = any origin


Handler = Callable[[Request, Principal, str], Awaitable[Response]]


class TusAPI:
    """The tus endpoint ``/files/`` and uploads ``/files/{id}``."""

    def __init__(self, engine: Engine, authenticator: Authenticator, config: TusConfig | None = None) -> None:
        self.engine = engine
        self.auth = authenticator
        self.config = config or TusConfig()
        self._collection: dict[str, Handler] = {"POST": self.create}
        self._upload: dict[str, Handler] = {"HEAD": self.head, "GET": self.get, "PATCH": self.patch,
                                            "DELETE": self.terminate}

    @property
    def routes(self) -> list[BaseRoute]:
        inner: ASGIApp = Router(routes=[Route("/", self.dispatch, methods=METHODS),
                                        Route("/{upload_id}", self.dispatch, methods=METHODS)])
        if self.config.cors_origins:
            inner = CORSMiddleware(inner, allow_origins=list(self.config.cors_origins), allow_methods=METHODS,
                                   allow_headers=ALLOW_HEADERS, expose_headers=EXPOSE_HEADERS, max_age=86400)
        return [Mount(PREFIX, app=inner)]

    # -- dispatch ---------------------------------------------------------------------------------
    async def dispatch(self, request: Request) -> Response:
        method = request.headers.get("x-http-method-override", request.method).strip().upper()
        try:
            if method == "OPTIONS":
                return self.options()
            return await self._dispatch(request, method)
        except TusError as exc:
            return error_response(exc)
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
        length = await self._creation_length(request, principal, part_ids)
        count = parse_uint(h.get("content-length"), "Content-Length", "ERR_INVALID_REQUEST")
        with_body = h.get("content-type", "").split(";")[0].strip().lower() == OFFSET_STREAM and concat != "final"
        checksum = parse_checksum(h.get("upload-checksum")) if with_body else None
        if with_body and count is not None and length is not None and count > length:
            raise TusError(413, "ERR_UPLOAD_SIZE_EXCEEDED", "the body is longer than Upload-Length")
        text = decoded_text(pairs)
        upload_id = secrets.token_hex(16)
        extra: dict[str, object] = {"meta": [list(p) for p in pairs]}
        if concat:
            extra["concat"] = concat
        if part_ids:
            extra["parts"] = part_ids
        session = await self.engine.create_session(
            principal, FAMILY, NAMESPACE, upload_id, length, session_id=upload_id,
            content_type=text.get("filetype", text.get("type", "")), name=text.get("filename", text.get("name", "")),
            metadata=text, ttl=self.config.expiration, commit_on_complete=concat not in ("partial", "final"),
            extra=extra)
        if concat == "final":
            session = await self._start_final(session, principal)
        elif with_body and (count is None or count > 0):
            session = await self._append(session.id, principal, 0, _body(request, checksum), count, session=session,
                                         creating=True)
        elif session.complete:
            session = await self._finished(session, principal)
        headers = self._upload_headers(session)
        headers["Location"] = self._location(request, upload_id)
        return Response(status_code=201, headers=headers)

    async def _creation_length(self, request: Request, principal: Principal, part_ids: list[str]) -> int | None:
        """The new upload's length (None = deferred); a final's is the sum of its partial uploads."""
        h = request.headers
        length = parse_uint(h.get("upload-length"), "Upload-Length", "ERR_INVALID_UPLOAD_LENGTH")
        deferred = h.get("upload-defer-length")
        if part_ids:
            if length is not None or deferred is not None:
                raise TusError(400, "ERR_INVALID_CONCAT", "a final upload takes no Upload-Length")
            parts = [await self.engine.get_session(p, principal=principal) for p in part_ids]
            for part in parts:
                if part.family != FAMILY or part.extra.get("concat") != "partial":
                    raise TusError(400, "ERR_INVALID_CONCAT", f"upload {part.id} is not a partial upload")
                if part.length is None:
                    raise TusError(400, "ERR_INVALID_CONCAT", f"partial upload {part.id} has no length yet")
                if part.state is not SessionState.OPEN:
                    raise TusError(400, "ERR_INVALID_CONCAT", f"partial upload {part.id} was already concatenated")
            length = sum(p.length or 0 for p in parts)
        elif length is not None and deferred is not None:
            raise TusError(400, "ERR_AMBIGUOUS_UPLOAD_LENGTH", "send Upload-Length or Upload-Defer-Length, not both")
        elif length is None and deferred is None:
            raise TusError(400, "ERR_INVALID_UPLOAD_LENGTH", "Upload-Length or Upload-Defer-Length: 1 is required")
        elif deferred is not None and deferred.strip() != "1":
            raise TusError(400, "ERR_INVALID_UPLOAD_LENGTH_DEFER", "Upload-Defer-Length must be 1")
        if length is not None and length > self.config.max_size:
            raise TusError(413, "ERR_MAX_SIZE_EXCEEDED",
                           f"the upload is larger than the maximum of {self.config.max_size} bytes")
        return length

    # -- core requests ----------------------------------------------------------------------------
    async def head(self, request: Request, principal: Principal, upload_id: str) -> Response:
        session = await self._current(upload_id, principal)
        headers = self._upload_headers(session)
        headers["Cache-Control"] = "no-store"
        if session.length is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(session.length)
        pairs = [(str(k), str(v)) for k, v in session.extra.get("meta", [])]
        if pairs:
            headers["Upload-Metadata"] = format_metadata(pairs)
        concat = session.extra.get("concat")
        if concat == "partial":
            headers["Upload-Concat"] = "partial"
        elif concat == "final":
            base = public_base(request)
            headers["Upload-Concat"] = "final;" + " ".join(f"{base}{PREFIX}/{p}" for p in session.extra["parts"])
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
        check = self._patch_rules(offset, count)
        if length is None and count is not None:
            # the common case: the engine reads, checks and claims in one store transaction
            session = await self._append(upload_id, principal, offset, _body(request, checksum), count, check=check)
            return Response(status_code=204, headers=self._upload_headers(session))
        session = await self.engine.get_session(upload_id, principal=principal)
        check(session)
        if length is not None:
            if length > self.config.max_size:
                raise TusError(413, "ERR_MAX_SIZE_EXCEEDED",
                               f"the upload is larger than the maximum of {self.config.max_size} bytes")
            if session.length is None:
                session = await self.engine.set_length(upload_id, principal, length)
            elif session.length != length:
                raise TusError(400, "ERR_INVALID_UPLOAD_LENGTH", "the upload's length is already set")
        if session.complete and offset == session.received and not count:
            session = await self._finished(session, principal)  # a retry after a lost response
        else:
            body = _body(request, checksum)
            if session.length is None and count is None:  # chunked body of a deferred upload: enforce the max
                body = _capped(body, self.config.max_size - offset)
            session = await self._append(upload_id, principal, offset, body, count, session=session, check=check)
        return Response(status_code=204, headers=self._upload_headers(session))

    async def get(self, request: Request, principal: Principal, upload_id: str) -> Response:
        session = await self._current(upload_id, principal)
        if session.state is not SessionState.COMMITTED:
            raise TusError(400, "ERR_UPLOAD_NOT_FINISHED", "the upload is not finished; HEAD reports its offset")
        info = await self.engine.stat_object(NAMESPACE, session.key)
        headers = {"Tus-Resumable": TUS_VERSION, "X-Content-Type-Options": "nosniff"}
        headers["Content-Disposition"] = content_disposition(session.name)
        try:
            return object_response(self.engine, info, request.headers.get("range"), headers,
                                   media_type=safe_media_type(session.content_type))
        except RangeNotSatisfiable as exc:
            raise TusError(416, "ERR_RANGE_NOT_SATISFIABLE", str(exc), exc.headers) from exc

    async def terminate(self, request: Request, principal: Principal, upload_id: str) -> Response:
        session = await self.engine.delete_session(upload_id, principal)
        await self.engine.delete_object(NAMESPACE, session.key)
        return Response(status_code=204, headers={"Tus-Resumable": TUS_VERSION})

    # -- helpers ----------------------------------------------------------------------------------
    async def _current(self, upload_id: str, principal: Principal) -> Session:
        """The upload as HEAD and GET report it: a final whose parts are complete is finished, and so is a
        complete upload whose commit a crash interrupted."""
        session = await self.engine.get_session(upload_id, principal=principal)
        if session.complete and session.state is not SessionState.COMMITTED and session.commit_on_complete:
            return await self._finished(session, principal)
        return await self._maybe_finish_final(session, principal)

    def _patch_rules(self, offset: int, count: int | None) -> Callable[[Session], None]:
        """tus's own refusals of a PATCH, checked on the session the append claims."""
        def check(session: Session) -> None:
            if session.extra.get("concat") == "final":
                raise TusError(403, "ERR_MODIFY_FINAL", "a final upload cannot be modified")
            if session.length is None and count is not None and offset + count > self.config.max_size:
                raise TusError(413, "ERR_MAX_SIZE_EXCEEDED",
                               f"the upload would grow beyond the maximum of {self.config.max_size} bytes")
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
            # creation-with-upload: the upload exists now, so answer 201 with the offset that was really
            # stored (a bad checksum stored nothing); the client continues with PATCH from there.
            return await self.engine.get_session(upload_id)
        if session.complete:
            session = await self._finished(session, principal)
        return session

    async def _finished(self, session: Session, principal: Principal) -> Session:
        """A complete upload: publish a normal one; let a partial one complete its pending finals."""
        if session.extra.get("concat") == "partial":
            for link in await self.engine.list_resources(PENDING_FINAL, parent=session.id):
                try:
                    final = await self.engine.get_session(str(link.data["final"]), principal=principal)
                    await self._maybe_finish_final(final, principal)
                except (errors.NotFound, errors.SessionGone, errors.PermissionDenied):
                    await self.engine.delete_resource(PENDING_FINAL, link.id)
                except errors.ChunkdError:
                    # this part's own bytes are recorded: don't fail its PATCH; HEAD/GET of the final retry
                    log.warning("could not finish final upload %s yet", link.data.get("final"), exc_info=True)
            return session
        if session.state is SessionState.OPEN:
            session = await self.engine.commit(session.id, principal)
        return session

    async def _start_final(self, final: Session, principal: Principal) -> Session:
        """Link a new final upload to its unfinished parts, then try to finish it at once."""
        for part_id in final.extra["parts"]:
            part = await self.engine.get_session(part_id, principal=principal)
            if not part.complete:
                await self.engine.create_resource(PENDING_FINAL, f"{final.id}.{part_id}", principal,
                                                  {"final": final.id}, parent=part_id)
        # a part that completed between the checks above and the links is caught here (or by HEAD/GET)
        return await self._maybe_finish_final(final, principal)

    async def _maybe_finish_final(self, session: Session, principal: Principal) -> Session:
        if session.extra.get("concat") != "final" or session.state is not SessionState.OPEN:
            return session
        parts: list[str] = list(session.extra["parts"])
        try:
            for part_id in parts:
                part = await self.engine.get_session(part_id, principal=principal)
                if not part.complete:
                    return session
        except (errors.NotFound, errors.SessionGone):
            return session  # a part expired or was terminated: the final can never finish
        try:
            session = await concatenate(self.engine, session.id, principal, parts)
        except errors.Conflict:
            # another request is composing it right now (it will finish it), or another final consumed a
            # shared part (this one can never finish); either way the caller's own request succeeded, and
            # HEAD/GET retry the composition lazily
            return session
        for part_id in parts:
            await self.engine.delete_resource(PENDING_FINAL, f"{session.id}.{part_id}")
        return session

    def _upload_headers(self, session: Session) -> dict[str, str]:
        headers = {"Tus-Resumable": TUS_VERSION}
        final_pending = session.extra.get("concat") == "final" and session.state is not SessionState.COMMITTED
        if not final_pending:
            headers["Upload-Offset"] = str(session.received)
        if session.state is SessionState.OPEN:
            headers["Upload-Expires"] = http_date(session.expires_at)
        return headers

    def _location(self, request: Request, upload_id: str) -> str:
        base = public_base(request)
        return f"{base}{PREFIX}/{upload_id}"


def _body(request: Request, checksum: tuple[str, bytes] | None) -> Body:
    body = request_body(request)
    return verified(body, *checksum) if checksum else body


async def _capped(body: Body, limit: int) -> Body:
    """``body``, raising TooLarge (nothing is recorded then) once it exceeds ``limit`` bytes."""
    total = 0
    async for piece in body:
        total += len(piece)
        if total > limit:
            raise errors.TooLarge(f"the upload would grow beyond the maximum of {limit} more bytes")
        yield piece


__all__ = ["TusAPI", "TusConfig"]
