"""Short, human texts for what went wrong: a protocol's error answer as ``code: message`` (instead of its raw
JSON or XML) and a transport failure as ``connection refused`` / ``connection reset`` / ``timed out``."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

_XML_CODE = re.compile(r"<Code>\s*([^<]*?)\s*</Code>", re.S)
_XML_MESSAGE = re.compile(r"<Message>\s*([^<]*?)\s*</Message>", re.S)
_LIMIT = 300


def _code_message(doc: Any) -> str | None:
    """``{"error": {"code", "message"}}`` (Graph, chunkd's admin API) or ``{"Error": {"Code", "Message"}}``
    (Service Fabric)."""
    if not isinstance(doc, dict):
        return None
    err = doc.get("error", doc.get("Error"))
    if not isinstance(err, dict):
        return None
    code = err.get("code", err.get("Code"))
    message = err.get("message", err.get("Message"))
    if not code and not message:
        return None
    return ": ".join(str(p) for p in (code, message) if p)


def protocol_message(response: httpx.Response) -> str:
    """The error a response carries, as ``code: message``; its first line of text when it is no known format."""
    try:
        text = response.text
    except Exception:  # a streamed body that was never read, an undecodable charset
        text = ""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            found = _code_message(json.loads(stripped))
        except ValueError:
            found = None
        if found:
            return found[:_LIMIT]
    if "<Error>" in stripped:  # Azure Blob: the message's first line (RequestId and Time follow on their own)
        code, message = _XML_CODE.search(stripped), _XML_MESSAGE.search(stripped)
        if code or message:
            first = message.group(1).splitlines()[0] if message and message.group(1) else ""
            return ": ".join(p for p in (code.group(1) if code else "", first) if p)[:_LIMIT]
    header_code = response.headers.get("x-ms-error-code")
    line = stripped.splitlines()[0] if stripped else ""
    if header_code and header_code not in line:
        return f"{header_code}: {line}".rstrip(": ")[:_LIMIT]
    return line[:_LIMIT]


def transport_reason(exc: httpx.TransportError) -> str:
    """A few words for a network failure."""
    text = str(exc).lower()
    if isinstance(exc, httpx.ConnectError):
        if "refused" in text:
            return "connection refused"
        if "name or service" in text or "nodename" in text or "resolution" in text:
            return "host name not found"
        return f"cannot connect ({exc})" if str(exc) else "cannot connect"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out" if not isinstance(exc, httpx.ConnectTimeout) else "connect timed out"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the server closed the connection"
    if "reset" in text:
        return "connection reset"
    if "broken pipe" in text:
        return "connection lost (broken pipe)"
    return f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
