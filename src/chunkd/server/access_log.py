"""The access log (``--access-log``): one ``chunkd.access`` line per HTTP request, as a pure ASGI middleware.

A line holds the client address, method, path with every credential in its query redacted (a SAS ``sig``,
Graph's ``tempauthtoken``, any ``*token*``/``*secret*``/``*signature*``/``*credential*`` name or a bearer-like
value), status, request body bytes read, response body bytes sent, duration, the authenticated principal and a
request id. The request id is the one the response already carries (Graph ``request-id``, Blob
``x-ms-request-id``), else a proxy's ``X-Request-ID``, else a new one; the last two are sent back as
``X-Request-ID`` so that a client can quote it.

Pure ASGI (no ``BaseHTTPMiddleware``): it wraps ``receive`` and ``send`` to count, never buffers a body, and is
not installed at all when the access log is off, so it then costs nothing.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chunkd.auth.authenticator import PRINCIPAL_STATE_KEY as PRINCIPAL_KEY
from chunkd.server.logs import ACCESS_LOGGER, FIELDS
from chunkd.server.redact import REDACTED, redact_query

log = logging.getLogger(ACCESS_LOGGER)

__all__ = ["REDACTED", "AccessLog", "redact_query"]

REQUEST_ID_HEADERS = (b"request-id", b"x-ms-request-id", b"x-request-id")
_SAFE_ID = re.compile(r"^[\w.:@/+=-]{1,128}$")


def _printable(text: str) -> str:
    """Control characters escaped: a path must not forge another log line."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


class AccessLog:
    """ASGI middleware that logs every HTTP request when it ends (also when the app raised: status 500)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        head = scope.get("method") == "HEAD"
        state = scope.setdefault("state", {})
        counts = [0, 0, 0]  # bytes in, bytes out, status
        rid = ""
        header_id = ""
        for key, value in scope.get("headers", ()):
            if key == b"x-request-id":
                text = value.decode("latin-1")
                header_id = text if _SAFE_ID.match(text) else ""
                break

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                counts[0] += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            nonlocal rid
            if message["type"] == "http.response.start":
                counts[2] = message["status"]
                headers = message.get("headers", [])
                rid = next((v.decode("latin-1") for k, v in headers if k.lower() in REQUEST_ID_HEADERS), "")
                if not rid:
                    rid = header_id or secrets.token_hex(16)
                    message = {**message, "headers": [*headers, (b"x-request-id", rid.encode())]}
            elif message["type"] == "http.response.body" and not head:  # uvicorn drops a HEAD's body
                counts[1] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        except BaseException:
            if not counts[2]:
                counts[2] = 500
            raise
        finally:
            self._log(scope, state, counts, rid or header_id or "-", time.perf_counter() - started)

    @staticmethod
    def _log(scope: Scope, state: Any, counts: list[int], rid: str, seconds: float) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        raw = scope.get("raw_path")
        path = raw.decode("latin-1") if isinstance(raw, bytes) else scope.get("path", "")
        query = redact_query(scope.get("query_string", b"").decode("latin-1"))
        target = _printable(f"{path}?{query}" if query else path)
        client = scope.get("client")
        addr = client[0] if client else "-"
        principal = state.get(PRINCIPAL_KEY, "-") if isinstance(state, dict) else "-"
        method = scope.get("method", "-")
        ms = round(seconds * 1000, 2)
        status = counts[2] or 0  # 0: the client left before an answer
        # makeRecord + handle, not log.info(): skips the caller lookup (a third of the cost of a line)
        record = log.makeRecord(log.name, logging.INFO, __file__, 0, '%s "%s %s" %d in=%d out=%d %.2fms principal=%s '
                                'rid=%s', (addr, method, target, status, counts[0], counts[1], ms, principal, rid),
                                None, extra={FIELDS: {"client": addr, "method": method, "path": target,
                                                      "status": status, "bytes_in": counts[0],
                                                      "bytes_out": counts[1], "duration_ms": ms,
                                                      "principal": principal, "request_id": rid}})
        log.handle(record)
