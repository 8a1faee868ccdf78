"""Informational (1xx) responses from the application, on chunkd's HTTP/1.1 protocol class.

ASGI has no event for a 1xx other than the implicit ``100 Continue`` (the early-hints extension carries only
``Link`` headers of a 103), and uvicorn writes none. The IETF resumable-upload draft wants ``104 Upload
Resumption Supported`` with the new upload's ``Location`` *before* the final response, while the request body
is still arriving. :func:`install` puts a sender into the request scope's extensions
(``scope["extensions"]["chunkd.informational"]["send"]``, see :func:`chunkd.protocols._http.send_informational`)
that writes the interim response straight to the connection, which is safe exactly while the final response has
not started: HTTP/1.1 allows any number of 1xx responses before it (RFC 9110 section 15.2), and a client must
parse them even when it does not expect them. It is offered on HTTP/1.1 connections only (an HTTP/1.0 client
cannot take a 1xx). Without the extension (another server, a test transport) an application simply sends none.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from chunkd.protocols._http import INFORMATIONAL

# RFC 9110 field syntax: a token name, a value without CR, LF or NUL
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\x00\r\n]")
_REASONS = {103: b"Early Hints", 104: b"Upload Resumption Supported"}


def install(scope: dict[str, Any], cycle: Any) -> None:
    """Offer 1xx responses for the request whose uvicorn ``RequestResponseCycle`` is ``cycle``."""
    if scope.get("type") == "http" and scope.get("http_version") == "1.1":
        extensions = scope.setdefault("extensions", {})
        extensions[INFORMATIONAL] = {"send": functools.partial(_send, cycle)}


def _send(cycle: Any, status: int, headers: list[tuple[bytes, bytes]]) -> bool:
    """Write one interim response unless the final one has begun or the client is gone; True when written.
    Only 103 and 104 are allowed: 100 belongs to uvicorn's Expect handling and 101 to upgrades."""
    if status not in _REASONS:
        raise ValueError(f"status {status} is not an informational response this server sends")
    if cycle.response_started or cycle.disconnected or cycle.transport.is_closing():
        return False
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])]
    for name, value in headers:
        if not _NAME.fullmatch(name) or _BAD_VALUE.search(value):
            raise ValueError("invalid header in an informational response")
        lines.append(name + b": " + value + b"\r\n")
    lines.append(b"\r\n")
    cycle.transport.write(b"".join(lines))
    return True
