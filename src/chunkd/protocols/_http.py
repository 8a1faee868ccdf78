"""Helpers every front end shares: request bodies, query strings, Range handling, dates."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from chunkd.core.body import ClientGone
from chunkd.core.engine import Engine
from chunkd.core.models import ObjectInfo


async def request_body(request: Request) -> AsyncIterator[bytes]:
    """The request body as the core expects it: non-empty pieces, ClientGone on disconnect."""
    try:
        async for piece in request.stream():
            if piece:
                yield piece
    except ClientDisconnect as exc:
        raise ClientGone() from exc


def first_query(scope: Mapping[str, Any]) -> dict[str, str]:
    """Query parameters, case-sensitive, the first occurrence of a name winning."""
    out: dict[str, str] = {}
    for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
        out.setdefault(name, value)
    return out


def iso_date(ts: float, digits: int = 3) -> str:
    """ISO-8601 UTC with a ``Z``: ``2024-05-01T10:00:00.123Z``."""
    dt = datetime.fromtimestamp(ts, UTC)
    frac = f"{dt.microsecond:06d}"[:digits]
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if digits else "") + "Z"


def http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


class RangeNotSatisfiable(Exception):
    pass


_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single ``Range: bytes=a-b`` / ``a-`` / ``-n`` as half-open ``(start, end)``; None = whole.

    Multi-range requests are answered with the whole object (allowed by RFC 9110). Raises
    RangeNotSatisfiable when the range lies outside the object.
    """
    if not header:
        return None
    m = _RANGE.match(header)
    if not m:
        return None
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        return None
    if first == "":
        n = int(last)
        if n == 0:
            raise RangeNotSatisfiable()
        return (max(0, size - n), size)
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    if start >= size or (last != "" and int(last) < start):
        raise RangeNotSatisfiable()
    return (start, end)


def object_response(engine: Engine, info: ObjectInfo, range_header: str | None,
                    headers: dict[str, str] | None = None, media_type: str = "application/octet-stream",
                    head: bool = False) -> Response:
    """200 with the whole object, 206 with one range, or 416."""
    headers = dict(headers or {})
    headers.setdefault("Accept-Ranges", "bytes")
    headers.setdefault("Last-Modified", http_date(info.modified_at))
    try:
        rng = parse_range(range_header, info.size)
    except RangeNotSatisfiable:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{info.size}", **headers})
    start, end = rng if rng else (0, info.size)
    status = 206 if rng else 200
    if rng:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{info.size}"
    headers["Content-Length"] = str(end - start)
    if head:
        return Response(status_code=status, headers=headers, media_type=media_type)
    return StreamingResponse(engine.read_object(info.namespace, info.key, start, end), status_code=status,
                             headers=headers, media_type=media_type)
