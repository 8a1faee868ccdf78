"""What every Microsoft Graph front end shares: the error JSON, request ids, bearer authentication and
permission checks. One error table for all Graph families (print, industry data).

Use :func:`graph_call` around a handler: it gives the request its ids, turns :class:`GraphError` and core
errors into ``{"error": {"code", "message", "innerError": {...}}}`` and puts ``request-id`` /
``client-request-id`` on every response, success or not.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from chunkd.auth.authenticator import Authenticator, Unauthenticated
from chunkd.core import errors
from chunkd.core.body import ClientGone
from chunkd.core.principal import Principal
from chunkd.protocols._errors import lookup, retry_after
from chunkd.protocols._http import MAX_JSON_BODY, BodyTooLarge, RangeNotSatisfiable, iso_date, json_body
from chunkd.protocols._parse import JsonError

log = logging.getLogger("chunkd.graph")


class GraphError(Exception):
    """A Graph error response: HTTP ``status``, top-level ``code``, optional inner ``inner`` code."""

    def __init__(self, status: int, code: str, message: str, inner: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.inner = status, code, message, inner
        self.headers = headers or {}


# core error -> (status, code, inner code); looked up along the exception's MRO, most specific first
ERRORS: dict[type[errors.ChunkdError], tuple[int, str, str | None]] = {
    errors.InvalidRange: (416, "invalidRange", None),
    errors.LengthMismatch: (400, "invalidRequest", "fragmentLengthMismatch"),
    errors.InvalidInput: (400, "invalidRequest", None),
    errors.SessionNotFound: (404, "itemNotFound", "uploadSessionNotFound"),
    errors.SessionGone: (404, "itemNotFound", "uploadSessionNotFound"),
    errors.NotFound: (404, "itemNotFound", None),
    errors.SessionIncomplete: (409, "conflict", "uploadSessionIncomplete"),
    errors.RangeBusy: (503, "serviceNotAvailable", None),
    errors.WriteInterrupted: (503, "serviceNotAvailable", None),
    errors.Conflict: (409, "conflict", None),
    errors.PermissionDenied: (403, "accessDenied", None),
    errors.TooLarge: (400, "invalidRequest", "maxFileSizeExceeded"),
    ClientGone: (400, "invalidRequest", None),
    errors.PiecesMissing: (503, "serviceNotAvailable", None),
    errors.StorageFull: (507, "insufficientStorage", None),
    errors.StorageUnavailable: (503, "serviceNotAvailable", None),
}


def from_core(exc: errors.ChunkdError) -> GraphError:
    """The Graph error for a core error (500 generalException for anything unmapped)."""
    entry = lookup(ERRORS, exc)
    if entry is None:
        return GraphError(500, "generalException", "internal error")
    status, code, inner = entry
    return GraphError(status, code, exc.message, inner, retry_after(status, exc) or None)


def request_ids(request: Request) -> tuple[str, str]:
    """(request-id, client-request-id) of this request; created once, then kept on ``request.state``."""
    ids = getattr(request.state, "graph_ids", None)
    if ids is None:
        rid = str(uuid.uuid4())
        ids = (rid, request.headers.get("client-request-id") or rid)
        request.state.graph_ids = ids
    return ids


def error_response(request: Request, exc: GraphError) -> JSONResponse:
    rid, crid = request_ids(request)
    inner: dict[str, Any] = {"date": iso_date(time.time(), 0), "request-id": rid, "client-request-id": crid}
    if exc.inner:
        inner = {"code": exc.inner, **inner}
    body = {"error": {"code": exc.code, "message": exc.message, "innerError": inner}}
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


async def graph_call(request: Request, handler: Callable[[], Awaitable[Response]]) -> Response:
    """Run ``handler`` with Graph error handling and request-id headers."""
    rid, crid = request_ids(request)
    try:
        response = await handler()
    except GraphError as exc:
        response = error_response(request, exc)
    except RangeNotSatisfiable as exc:
        response = error_response(request, GraphError(416, "invalidRange", str(exc), headers=exc.headers))
    except ClientGone:
        response = error_response(request, GraphError(400, "invalidRequest", "the client closed the connection "
                                                                             "before the body was complete"))
    except errors.ChunkdError as exc:
        response = error_response(request, from_core(exc))
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        response = error_response(request, GraphError(500, "generalException", "internal error"))
    response.headers["request-id"] = rid
    response.headers["client-request-id"] = crid
    return response


def authenticate(authenticator: Authenticator, request: Request) -> Principal:
    """The caller, or 401 ``InvalidAuthenticationToken``; personal Microsoft accounts get 403.

    A personal account is recognised by its token's tenant (``tid``): the Microsoft consumer tenant
    ``9188040d-6c67-4c5b-b112-36a304b66dad`` marks it (``Principal.personal``).
    """
    try:
        principal = authenticator.authenticate(request.headers, request.scope)
    except Unauthenticated as exc:
        raise GraphError(401, "InvalidAuthenticationToken", str(exc)) from exc
    if principal.personal:
        raise GraphError(403, "accessDenied", "personal Microsoft accounts are not supported by this API")
    return principal


APP_ONLY_SUFFIX = ".All"


def granted(principal: Principal, allowed: Iterable[str]) -> set[str]:
    """The permissions of ``allowed`` the caller holds: delegated tokens by their scopes (``scp``),
    application tokens by their roles restricted to ``.All`` permissions (Graph has no application
    permission without ``.All`` for these APIs); the anonymous principal (``--no-auth``) holds all."""
    allowed = set(allowed)
    if principal.unrestricted:
        return allowed
    if principal.kind == "user":
        held = principal.scopes
    elif principal.kind == "app":
        held = frozenset(r for r in principal.roles if r.endswith(APP_ONLY_SUFFIX))
    else:
        held = frozenset()
    return allowed & held


def require(principal: Principal, allowed: Iterable[str], what: str) -> set[str]:
    """The granted subset of ``allowed``, or 403 ``accessDenied`` naming the permissions needed."""
    allowed = list(allowed)
    got = granted(principal, allowed)
    if not got:
        raise GraphError(403, "accessDenied", f"{what} needs one of the permissions {', '.join(allowed)}")
    return got


async def json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object (an empty body is ``{}``), else 400 ``invalidRequest``; a body over
    :data:`~chunkd.protocols._http.MAX_JSON_BODY` is 413, refused without buffering it."""
    try:
        value = await json_body(request)
    except BodyTooLarge as exc:
        raise GraphError(413, "invalidRequest", f"a JSON request body is at most {MAX_JSON_BODY} bytes") from exc
    except JsonError as exc:
        raise GraphError(400, "invalidRequest", f"the request body is not valid JSON: {exc}") from exc
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GraphError(400, "invalidRequest", "the request body must be a JSON object")
    return value
