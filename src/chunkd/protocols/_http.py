"""Helpers every front end shares: request bodies (streamed, or capped and read whole), query strings,
Range handling, dates."""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from chunkd.core import errors
from chunkd.core.body import ClientGone
from chunkd.core.engine import Engine
from chunkd.core.models import ObjectInfo
from chunkd.protocols._parse import INT64_MAX, loads_json, parse_uint

MAX_JSON_BODY = 1 << 20  # the JSON bodies of these APIs are a few hundred bytes; never buffer more
INFORMATIONAL = "chunkd.informational"  # scope extension of chunkd's server: see chunkd.server.informational


def send_informational(request: Request, status: int, headers: Mapping[str, str]) -> bool:
    """Send an interim (1xx) response before the final one, where the server offers it (chunkd's own
    HTTP/1.1 protocol); False when it does not, or when the final response has begun."""
    extension = request.scope.get("extensions", {}).get(INFORMATIONAL)
    if not extension:
        return False
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    return bool(extension["send"](status, raw))


async def request_body(request: Request) -> AsyncIterator[bytes]:
    """The request body as the core expects it: non-empty pieces, ClientGone on disconnect."""
    try:
        async for piece in request.stream():
            if piece:
                yield piece
    except ClientDisconnect as exc:
        raise ClientGone() from exc


class BodyTooLarge(Exception):
    """The request body is longer than the caller's limit (nothing was kept of it)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes")
        self.limit = limit


async def capped_body(request: Request, limit: int) -> bytes:
    """The whole request body, read piece by piece and refused with BodyTooLarge as soon as it exceeds
    ``limit`` bytes (a declared Content-Length over the limit is refused before reading anything)."""
    declared = request.headers.get("content-length")
    if declared is not None and (parse_uint(declared.strip()) or 0) > limit:
        raise BodyTooLarge(limit)
    raw = bytearray()
    async for piece in request_body(request):
        raw += piece
        if len(raw) > limit:
            raise BodyTooLarge(limit)
    return bytes(raw)


async def json_body(request: Request, limit: int = MAX_JSON_BODY) -> object:
    """The request body as JSON, None when it is empty or only whitespace. Raises BodyTooLarge, or
    :class:`~chunkd.protocols._parse.JsonError` for malformed or too deeply nested documents."""
    raw = await capped_body(request, limit)
    if not raw.strip():
        return None
    return loads_json(raw)


def first_query(scope: Mapping[str, Any]) -> dict[str, str]:
    """Query parameters, case-sensitive, the first occurrence of a name winning."""
    out: dict[str, str] = {}
    for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
        out.setdefault(name, value)
    return out


def iso_date(ts: float, digits: int = 3) -> str:
    """ISO-8601 UTC with a ``Z`` and ``digits`` (0-7) fraction digits: ``2024-05-01T10:00:00.123Z``.

    Seven digits are .NET's 100-ns ticks, the form Graph writes (``2022-12-16T06:07:39.3096785Z``).
    """
    ticks = round(ts * 10_000_000)
    seconds, frac = divmod(ticks, 10_000_000)
    dt = datetime.fromtimestamp(seconds, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac:07d}"[:digits + 1] if digits else "") + "Z"


def http_date(ts: float) -> str:
    """An HTTP date (RFC 9110 IMF-fixdate), whole seconds."""
    return _http_date(int(ts))


@functools.lru_cache(maxsize=256)
def _http_date(second: int) -> str:
    # every tus response carries Upload-Expires, mostly the same second: formatting it was ≈ 4 % of a PATCH
    return formatdate(second, usegmt=True)


class RangeNotSatisfiable(Exception):
    """The requested range lies outside the object; a 416 names the object's size in ``headers``."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the requested range lies outside the {size} bytes of the object")
        self.size = size
        self.headers = {"Content-Range": f"bytes */{size}"}


_RANGE = re.compile(r"\s*bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)\s*")


def _position(digits: str) -> int:
    value = parse_uint(digits, INT64_MAX)
    if value is None:
        raise errors.InvalidInput(f"Range: {digits[:40]}{'...' if len(digits) > 40 else ''} is not a 64-bit byte "
                                  "position")
    return value


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single ``Range: bytes=a-b`` / ``a-`` / ``-n`` as half-open ``(start, end)``; None = whole.

    Multi-range and malformed requests are answered with the whole object (allowed by RFC 9110). Raises
    RangeNotSatisfiable when the range lies outside the object, and core InvalidInput (each family's 400)
    for a position beyond 2^63 - 1, which no object has and no client means.
    """
    if not header:
        return None
    m = _RANGE.fullmatch(header)
    if not m:
        return None
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        return None
    if first == "":
        n = _position(last)
        if n == 0:
            raise RangeNotSatisfiable(size)
        return (max(0, size - n), size)
    start = _position(first)
    stop = None if last == "" else _position(last)
    if start >= size or (stop is not None and stop < start):
        raise RangeNotSatisfiable(size)
    return (start, size if stop is None else min(stop + 1, size))


def object_response(engine: Engine, info: ObjectInfo, range_header: str | None,
                    headers: dict[str, str] | None = None, media_type: str = "application/octet-stream",
                    head: bool = False) -> Response:
    """200 with the whole object or 206 with one range; raises RangeNotSatisfiable (the family answers 416
    in its own format) or InvalidInput as :func:`parse_range` does."""
    headers = dict(headers or {})
    headers.setdefault("Accept-Ranges", "bytes")
    headers.setdefault("Last-Modified", http_date(info.modified_at))
    rng = parse_range(range_header, info.size)
    start, end = rng if rng else (0, info.size)
    status = 206 if rng else 200
    if rng:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{info.size}"
    headers["Content-Length"] = str(end - start)
    if head:
        return Response(status_code=status, headers=headers, media_type=media_type)
    return StreamingResponse(engine.read_object(info.namespace, info.key, start, end), status_code=status,
                             headers=headers, media_type=media_type)


_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def external_base(headers: Mapping[str, str], scheme: str, host: str, trust_proxy: bool) -> str:
    """``scheme://host`` as the client sees it: from ``Forwarded`` or ``X-Forwarded-Host/Proto`` when the
    server is configured to trust its proxy, else from the request itself. A forwarded host that is not a
    plain host[:port] is ignored (it would end up inside URLs handed to clients)."""
    if trust_proxy:
        forwarded = headers.get("forwarded")
        if forwarded:
            first = forwarded.split(",", 1)[0]
            for part in first.split(";"):
                name, _, val = part.strip().partition("=")
                val = val.strip().strip('"')
                if name.lower() == "host" and _HOST.fullmatch(val):
                    host = val
                elif name.lower() == "proto" and val in ("http", "https"):
                    scheme = val
        else:
            forwarded_host = headers.get("x-forwarded-host", "").split(",", 1)[0].strip()
            if _HOST.fullmatch(forwarded_host):
                host = forwarded_host
            proto = headers.get("x-forwarded-proto", "").split(",", 1)[0].strip().lower()
            if proto in ("http", "https"):
                scheme = proto
    return f"{scheme}://{host}"


@dataclass(frozen=True)
class PublicUrls:
    """How the URLs chunkd hands out (tus ``Location``, Graph ``uploadUrl``, Industry Data ``sessionUrl``)
    begin: ``public_url`` when set (``--public-url``: a load balancer in front of several nodes), else the
    request's own scheme and host, or the proxy's ``Forwarded`` / ``X-Forwarded-*`` with ``trust_proxy``."""

    public_url: str | None = None
    trust_proxy: bool = False


def public_base(request: Request) -> str:
    """The base (``scheme://host[/path]``, no trailing slash) of URLs handed out in answer to ``request``;
    every family builds them here, from the app's :class:`PublicUrls` (``app.state.public_urls``)."""
    app = request.scope.get("app")
    urls = getattr(getattr(app, "state", None), "public_urls", None) or PublicUrls()
    if urls.public_url:
        return urls.public_url.rstrip("/")
    return external_base(request.headers, request.url.scheme, request.url.netloc, urls.trust_proxy)


def public_scheme(request: Request) -> str:
    """The scheme the client used as far as chunkd can tell (``--public-url``'s, a trusted proxy's, or the
    connection's): what a SAS's ``spr`` is signed for and checked against."""
    return public_base(request).split(":", 1)[0]

