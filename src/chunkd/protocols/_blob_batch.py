"""Blob Batch (``POST /{c}?restype=container&comp=batch``): a ``multipart/mixed`` body of up to 256 Delete
Blob subrequests, answered 202 with one ``application/http`` part per subrequest, in order.

Wire format (as azure-storage-blob sends it, and as Azure and Azurite answer)::

    --batch_<id>                                  --batchresponse_<id>
    Content-Type: application/http                Content-Type: application/http
    Content-ID: 0                                 Content-ID: 0
    Content-Transfer-Encoding: binary
                                                  HTTP/1.1 202 Accepted
    DELETE /{account}/{c}/{blob}?{sas} HTTP/1.1   x-ms-delete-type-permanent: true
    x-ms-client-request-id: …                     x-ms-request-id: …
    Content-Length: 0
                                                  --batchresponse_<id>--
    --batch_<id>--

A batch that cannot be run as a whole -- unparseable, empty, more than 256 parts, a subrequest other than
DELETE or outside the batch's container -- is still 202, with one error part and no Content-ID (Azure and
Azurite do the same). No HTTP here beyond the message format; the caller runs each subrequest.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from starlette.responses import Response

from chunkd.protocols import _blob_wire as wire
from chunkd.protocols._blob_wire import BlobError

MAX_SUBREQUESTS = 256
MAX_BODY = 4 << 20  # Azure's limit for a batch request body
_BOUNDARY = re.compile(r"""boundary\s*=\s*(?:"([^"]{1,200})"|([^\s;,"]{1,200}))""", re.IGNORECASE)
_BLANK = re.compile(rb"\r?\n\r?\n")
_LINE = re.compile(rb"\r?\n")


@dataclass
class SubRequest:
    """One parsed subrequest: the blob it names (decoded), its query (decoded, first value wins) and headers
    (lower-case names)."""

    content_id: str | None
    method: str
    blob: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class SubResponse:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes = b""


def _invalid(reason: str) -> BlobError:
    return BlobError(400, "InvalidInput", "One of the request inputs is not valid.", Reason=reason)


def parse(content_type: str, body: bytes, prefixes: Iterable[str]) -> list[SubRequest]:
    """The subrequests of a batch body whose paths must start with one of ``prefixes`` (the container's
    paths, each ending in ``/``); BlobError for a batch that cannot be run as a whole."""
    m = _BOUNDARY.search(content_type) if content_type.lower().startswith("multipart/mixed") else None
    if m is None:
        raise _invalid("Content-Type must be multipart/mixed with a boundary")
    delimiter = b"\r\n--" + (m.group(1) or m.group(2)).encode("latin-1")
    chunks = (b"\r\n" + body).split(delimiter)
    if len(chunks) < 2 or not chunks[-1].startswith(b"--"):
        raise _invalid("the body is not a complete multipart/mixed message")
    parts = chunks[1:-1]
    if not parts:
        raise _invalid("the batch has no subrequests")
    if len(parts) > MAX_SUBREQUESTS:
        raise BlobError(400, "ExceedsMaxBatchRequestCount", "The batch operation exceeds maximum number of allowed "
                        "subrequests.")
    return [_subrequest(part, tuple(prefixes)) for part in parts]


def _headers(lines: list[bytes]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or not name.strip():
            raise _invalid("a subrequest header line has no name")
        out.setdefault(name.strip().lower(), value.strip())
    return out


def _subrequest(part: bytes, prefixes: tuple[str, ...]) -> SubRequest:
    pieces = _BLANK.split(part.lstrip(b" \t").removeprefix(b"\r\n").removeprefix(b"\n"), maxsplit=1)
    if len(pieces) != 2:
        raise _invalid("a part has no embedded HTTP request")
    mime = _headers([ln for ln in _LINE.split(pieces[0]) if ln])
    http = _BLANK.split(pieces[1], maxsplit=1)[0]
    lines = _LINE.split(http)
    words = lines[0].decode("latin-1").split(" ")
    if len(words) != 3 or not words[2].startswith("HTTP/"):
        raise _invalid("a subrequest's request line is not 'METHOD target HTTP/1.1'")
    method, target = words[0].upper(), words[1]
    if method != "DELETE":
        raise _invalid(f"only Delete Blob subrequests are supported, not {method}")
    raw_path, _, raw_query = target.partition("?")
    path = unquote(raw_path)
    prefix = next((p for p in prefixes if path.startswith(p)), None)
    if prefix is None or len(path) == len(prefix):
        raise _invalid("every subrequest must name a blob in the batch's container")
    query: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        query.setdefault(name, value.replace(" ", "+") if name == "sig" else value)
    return SubRequest(content_id=mime.get("content-id"), method=method, blob=path[len(prefix):], query=query,
                      headers=_headers([ln for ln in lines[1:] if ln]))


def error_part(err: BlobError, version: str, request_id: str | None = None) -> SubResponse:
    rid = request_id or wire.new_request_id()
    body = wire.error_xml(err, rid).encode()
    return SubResponse(err.status, err.message.splitlines()[0] if err.message else "Error",
                       {"x-ms-error-code": err.code, "x-ms-request-id": rid, "x-ms-version": version,
                        "Content-Type": "application/xml", "Content-Length": str(len(body))}, body)


async def run(subs: list[SubRequest], version: str, delete: Callable[[SubRequest], Awaitable[None]],
              on_unexpected: Callable[[Exception], None]) -> list[tuple[str | None, SubResponse]]:
    """Run the subrequests one after another; each answer is its own, a failure never stops the others."""
    out: list[tuple[str | None, SubResponse]] = []
    for sub in subs:
        rid = wire.new_request_id()
        try:
            await delete(sub)
            resp = SubResponse(202, "Accepted", {"x-ms-delete-type-permanent": "true", "x-ms-request-id": rid,
                                                 "x-ms-version": version})
        except Exception as exc:  # every other subrequest still runs; the part says what went wrong
            err = wire.as_blob_error(exc)
            if err is wire.INTERNAL:
                on_unexpected(exc)
            resp = error_part(err, version, rid)
        if "x-ms-client-request-id" in sub.headers:
            resp.headers["x-ms-client-request-id"] = sub.headers["x-ms-client-request-id"]
        out.append((sub.content_id, resp))
    return out


def response(parts: list[tuple[str | None, SubResponse]]) -> Response:
    """The 202 multipart/mixed answer; ``parts`` are (Content-ID or None, subresponse) in request order."""
    boundary = f"batchresponse_{uuid.uuid4()}"
    chunks: list[bytes] = []
    for content_id, sub in parts:
        head = "Content-Type: application/http\r\n" + (f"Content-ID: {content_id}\r\n" if content_id else "")
        status = f"HTTP/1.1 {sub.status} {sub.reason}\r\n"
        fields = "".join(f"{k}: {v}\r\n" for k, v in sub.headers.items())
        chunks.append(f"--{boundary}\r\n{head}\r\n{status}{fields}\r\n".encode("latin-1", "replace") + sub.body)
    body = b"\r\n".join(chunks) + f"\r\n--{boundary}--\r\n".encode()
    return Response(body, status_code=202, headers={"Content-Type": f"multipart/mixed; boundary={boundary}"})
