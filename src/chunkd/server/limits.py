"""Connection-level limits on uvicorn's httptools protocol: request-head size and count, a head timeout, a
connection cap.

uvicorn with httptools bounds none of these. httptools collects a header value by appending every fragment to a
bytes object until the value ends, so a 64 MiB header costs quadratic copying, blocks the event loop for seconds
and leaves the heap grown; a client that sends its head one byte at a time holds a connection (an fd) for as long
as it likes; uvicorn's ``limit_concurrency`` answers 503 to *every* request once the cap is reached, those of
established connections too, and counts connections that never complete a head. ``LimitedHttpProtocol`` adds:

- **head bytes** (``max_header_bytes``): bytes are counted *before* they reach the parser while a request head
  (request line + header fields) is open, and the parser is never fed more than the limit of one head: beyond
  it the answer is ``431`` and the connection closes. Bytes after the end of a head in the same read are fed on
  as body. (A head that starts in the same read as the previous request's body end is counted from the next
  read: the bound is at most one read larger, never unbounded.)
- **header count** (``max_headers``): ``431`` when a head has more fields.
- **head timeout** (``header_timeout``): a connection must complete each request head within this many seconds
  of its first byte (of connecting, for the first request). Then ``408`` (or a silent close when the client sent
  nothing) and the connection closes. The same deadline bounds the rest of a request body that keeps arriving
  after the application has already answered (a 401 to a 1 TiB upload), as nginx's ``lingering_time`` does.
- **connection cap** (``max_connections``, per server process): a connection beyond it is answered ``503`` with
  ``Retry-After`` and closed at once, without reading; established connections are not affected.

It also offers the application informational (1xx) responses (:mod:`chunkd.server.informational`), which
uvicorn has no way to send.

The idle keep-alive timeout is uvicorn's own ``timeout_keep_alive`` (set by ``chunkd.server.run``). These
answers are plain text, as uvicorn's own ``400 Invalid HTTP request``: they are given before a request is routed
to an API family. The class relies on uvicorn's ``HttpToolsProtocol`` hooks (``data_received``, the parser
callbacks, ``on_response_complete``, ``send_400_response``); pyproject pins the uvicorn versions it was checked
against.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import resource
import time
from asyncio import TimerHandle
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from chunkd.server import informational
from chunkd.settings import Settings

logger = logging.getLogger("chunkd.limits")


@dataclass(frozen=True)
class HeadLimits:
    """The limits one server process applies to every connection."""

    max_header_bytes: int
    max_headers: int
    header_timeout: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> HeadLimits:
        return cls(settings.max_header_bytes, settings.max_headers, settings.header_timeout,
                   settings.max_connections)


@functools.cache
def process_limits() -> HeadLimits:
    """The limits from this process's ``CHUNKD_*`` environment, read once: uvicorn builds the protocol from an
    import string in every worker and passes it nothing of ours."""
    return HeadLimits.from_settings(Settings())


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a head that is being refused."""


# A refused client gets this long to read the answer while what it still sends is discarded (nginx's "lingering
# close"): closing a socket with unread input sends a TCP reset, and a client still writing its request would see
# "connection reset" instead of the 431.
LINGER_SECONDS = 2.0
_REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large", 503: "Service Unavailable"}
_LOG_EVERY = 10.0  # seconds; refusals come in floods, the log gets one line per kind and period
_last_logged: dict[int, float] = {}
_unlogged: dict[int, int] = {}


def _log_refusal(status: int, reason: str) -> None:
    now = time.monotonic()
    if now - _last_logged.get(status, -_LOG_EVERY) < _LOG_EVERY:
        _unlogged[status] = _unlogged.get(status, 0) + 1
        return
    _last_logged[status] = now
    more = _unlogged.pop(status, 0)
    logger.warning("connection answered %d: %s%s", status, reason,
                   f" (and {more} more since the last such line)" if more else "")


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded request heads, a head timeout and a connection cap."""

    limits: HeadLimits | None = None  # None: process_limits(); tests and subclasses may set their own
    _head_timer: TimerHandle | None = None
    _linger_timer: TimerHandle | None = None
    _refusal: tuple[int, str] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = self.limits or process_limits()
        self._in_head = True  # the parser is before the end of a request head (or between requests)
        self._head_bytes = 0  # bytes fed to the parser since the current head began
        self._header_count = 0
        self._answered = False  # refused: the connection is closing, input is discarded

    # connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._limits.max_connections:
            # Closed at once, without lingering: a flood beyond the cap must not hold descriptors.
            _log_refusal(503, f"more than max_connections={self._limits.max_connections} connections open")
            self._answer(503, "Too many connections; retry later.", (b"retry-after", b"1"), linger=False)
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._answered or self.transport.is_closing():
            return
        if self._in_head and self._head_timer is None:
            self._arm_head_timer()  # the first byte after a keep-alive pause starts the next head's clock
        view = memoryview(data)
        while view and not (self._answered or self.transport.is_closing()):
            if not self._in_head:
                super().data_received(view)  # type: ignore[arg-type]  # httptools reads any buffer
                return
            room = self._limits.max_header_bytes - self._head_bytes
            if room <= 0:
                self._refuse(431, f"request head over max_header_bytes={self._limits.max_header_bytes}")
                return
            piece, view = view[:room], view[room:]
            self._head_bytes += len(piece)
            super().data_received(piece)  # type: ignore[arg-type]

    # parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self._limits.max_headers:
            self._refusal = (431, f"more than max_headers={self._limits.max_headers} header fields")
            raise _Refused  # httptools stops parsing; uvicorn then calls send_400_response
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:
            # the request's ASGI task is created but has not run yet: the scope can still take the extension
            informational.install(self.scope, cycle)  # type: ignore[arg-type]  # uvicorn's TypedDict scope

    def on_message_complete(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self._in_head and self.cycle.response_complete and not self.transport.is_closing():
            self._arm_head_timer()  # answered before the body was read: the rest must come in time, too

    def send_400_response(self, msg: str) -> None:
        if self._refusal is not None:
            self._refuse(*self._refusal)
        else:
            super().send_400_response(msg)

    # timeouts and refusals

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self._limits.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._answered or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # a response is being sent: let it finish, then close
            return
        if not self._in_head or self._head_bytes == 0:
            # the rest of an answered request's body, or nothing of a new request: close as an idle keep-alive
            # connection (a 408 here could be read as the answer to a request the client is about to send)
            self.transport.close()
            return
        self._refuse(408, f"request head not complete within header_timeout={self._limits.header_timeout}s")

    def _refuse(self, status: int, reason: str) -> None:
        _log_refusal(status, reason)
        self._answer(status, f"{_REASONS[status]}: {reason}.")

    def _answer(self, status: int, message: str, *extra: tuple[bytes, bytes], linger: bool = True) -> None:
        """Write a complete plain-text response, then close the connection (after a lingering pause)."""
        self._answered = True
        self._cancel_head_timer()
        body = message.encode("ascii")
        head = [f"HTTP/1.1 {status} {_REASONS[status]}\r\n".encode("ascii")]
        for name, value in [*self.server_state.default_headers, *extra,
                            (b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode("ascii")), (b"connection", b"close")]:
            head.append(name + b": " + value + b"\r\n")
        self.transport.write(b"".join([*head, b"\r\n", body]))
        if not linger:
            self.transport.close()
            return
        if self.transport.can_write_eof():  # TCP: FIN after the answer (TLS cannot half-close; Content-Length does)
            self.transport.write_eof()
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)  # or the client's close


def raise_fd_limit(max_connections: int) -> None:
    """Raise this process's soft descriptor limit so that it can hold ``max_connections``.

    Each connection is a descriptor and an upload in progress holds another (its staged file); with the soft limit
    many systems start services with (1024) accept() would fail long before the cap. Workers inherit the limit.
    """
    wanted = 2 * max_connections + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if new > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    if new < wanted:
        logger.warning("descriptor limit %d is below what max_connections=%d needs (%d)", new, max_connections,
                       wanted)
