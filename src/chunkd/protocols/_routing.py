"""Routing every front end shares: a path parameter that also takes line breaks, a route that matches the
whole path, and the application-wide answer when no route serves a path (404) or a route does not take the
method (405).

Starlette's own answers are plain text (``Not Found``), which no client of these protocols can read. Here
the answer takes the format of the family whose prefix the path carries: FabricError JSON under
``/ImageStore`` and ``/$/``, Graph error JSON under ``/v1.0``, ``/beta`` and ``/print-upload``, tus plain
text under ``/files``, Azure error XML under ``/blob``, and chunkd's neutral ``{"error": {"code",
"message"}}`` everywhere else.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chunkd.protocols import _blob_wire as blob_wire
from chunkd.protocols._graph import GraphError, error_response, request_ids
from chunkd.protocols.servicefabric_wire import fabric_error_response
from chunkd.protocols.tus_wire import TusError
from chunkd.protocols.tus_wire import error_response as tus_error_response

ANY_PATH = "anypath"


class AnyPathConvertor(Convertor[str]):
    """Like Starlette's ``path`` but across line breaks too (``.`` does not match ``\\n``), so that a path
    with ``%0A`` reaches its family, which refuses it in its own words, instead of matching no route."""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor(ANY_PATH, AnyPathConvertor())


class ExactRoute(Route):
    """A Route whose pattern must match the whole path. Starlette ends its patterns with ``$``, which also
    matches before a final line break: ``/a/$/Content%0A`` would be served as ``/a/$/Content``."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.path_regex = re.compile(self.path_regex.pattern.removesuffix("$") + r"\Z")


def _under(path: str, *prefixes: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def _what(request: Request, status: int) -> str:
    path = request.scope.get("path", "")
    shown = path if len(path) <= 200 else path[:200] + "..."
    if status == 405:
        return f"{request.method} is not allowed on {shown!r}"
    return f"nothing is served at {shown!r}"


def _fabric(request: Request, status: int, headers: dict[str, str]) -> Response:
    return fabric_error_response(status, "E_INVALIDARG", _what(request, status), headers)


def _graph(request: Request, status: int, headers: dict[str, str]) -> Response:
    code = "itemNotFound" if status == 404 else "invalidRequest"
    response = error_response(request, GraphError(status, code, _what(request, status), headers=headers))
    response.headers["request-id"], response.headers["client-request-id"] = request_ids(request)
    return response


def _tus(request: Request, status: int, headers: dict[str, str]) -> Response:
    code = {404: "ERR_UPLOAD_NOT_FOUND", 405: "ERR_METHOD_NOT_ALLOWED"}.get(status, "ERR_INVALID_REQUEST")
    return tus_error_response(TusError(status, code, _what(request, status), headers))


def _blob(request: Request, status: int, headers: dict[str, str]) -> Response:
    if status == 405:
        err = blob_wire.BlobError(405, "UnsupportedHttpVerb", "The resource doesn't support specified Http Verb.")
    else:
        err = blob_wire.BlobError(status, "ResourceNotFound", "The specified resource does not exist.")
    rid = blob_wire.new_request_id()
    response = blob_wire.error_response(err, rid, request.method == "HEAD")
    response.headers.update({**headers, "x-ms-request-id": rid})
    return response


def _neutral(request: Request, status: int, headers: dict[str, str]) -> Response:
    code = {404: "notFound", 405: "methodNotAllowed"}.get(status, "invalidRequest")
    return JSONResponse({"error": {"code": code, "message": _what(request, status)}}, status_code=status,
                        headers=headers)


_FAMILIES: list[tuple[tuple[str, ...], Callable[[Request, int, dict[str, str]], Response]]] = [
    (("/ImageStore", "/$"), _fabric),
    (("/v1.0", "/beta", "/print-upload"), _graph),
    (("/files",), _tus),
    (("/blob",), _blob),
]


async def unrouted(request: Request, exc: Exception) -> Response:
    """Starlette's exception handler for HTTPException (raised by routing for 404 and 405)."""
    assert isinstance(exc, HTTPException)
    path = request.scope.get("path", "")
    headers = dict(exc.headers or {})
    for prefixes, render in _FAMILIES:
        if _under(path, *prefixes):
            return render(request, exc.status_code, headers)
    return _neutral(request, exc.status_code, headers)
