"""Wire pieces of the Azure Blob front end: errors (XML, and which exception becomes which Azure error: the
status of each service fault code and of each core error), body digests (Content-MD5, x-ms-content-crc64),
XML documents. No routing and no engine calls here."""

from __future__ import annotations

import base64
import binascii
import struct
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape

from starlette.responses import Response

from chunkd.auth import sas
from chunkd.checksums import OffLoopMd5, crc64
from chunkd.core import errors
from chunkd.core.body import Body, ClientGone
from chunkd.protocols._errors import lookup, retry_after
from chunkd.protocols._http import http_date, iso_date
from chunkd.services.blob_model import Blob, BlobFault, FaultCode

XML_DECL = '<?xml version="1.0" encoding="utf-8"?>'


class BlobError(Exception):
    """An Azure Blob error answer: HTTP status, ``x-ms-error-code``, message and extra elements."""

    def __init__(self, status: int, code: str, message: str, **extra: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra
        self.cause: errors.ChunkdError | None = None  # the core error answered, for its Retry-After


# the blob services' fault codes -> HTTP status
FAULT_STATUS: dict[FaultCode, int] = {
    FaultCode.CONTAINER_NOT_FOUND: 404,
    FaultCode.FINALISED: 403,
    FaultCode.BLOB_NOT_FOUND: 404,
    FaultCode.BLOB_EXISTS: 409,
    FaultCode.CONDITION_NOT_MET: 412,
    FaultCode.INVALID_BLOCK: 400,
    FaultCode.INVALID_BLOCK_LIST: 400,
}

def crc64_header(crc: int) -> str:
    return base64.b64encode(struct.pack("<Q", crc)).decode()


def error_xml(err: BlobError, request_id: str) -> str:
    """Azure's error document: code, message with request id and time, extra elements."""
    message = f"{err.message}\nRequestId:{request_id}\nTime:{iso_date(time.time(), 7)}"
    extra = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in err.extra.items())
    return f"{XML_DECL}<Error><Code>{err.code}</Code><Message>{escape(message)}</Message>{extra}</Error>"


def error_response(err: BlobError, request_id: str, head: bool = False) -> Response:
    """Azure's error XML with ``x-ms-error-code`` (headers only for HEAD)."""
    headers = {"x-ms-error-code": err.code, **retry_after(err.status, err.cause)}
    if head:
        return Response(status_code=err.status, headers=headers)
    return Response(error_xml(err, request_id), status_code=err.status, headers=headers,
                    media_type="application/xml")


# core error -> (status, x-ms-error-code, message)
CORE_ERRORS: dict[type[errors.ChunkdError], tuple[int, str, str]] = {
    errors.TooLarge: (413, "RequestBodyTooLarge", "The request body is too large."),
    errors.SessionNotFound: (400, "InvalidBlockList", "The specified block list is invalid."),
    errors.SessionGone: (400, "InvalidBlockList", "The specified block list is invalid."),
    errors.InvalidInput: (400, "InvalidInput", "One of the request inputs is not valid."),
    errors.NotFound: (404, "BlobNotFound", "The specified blob does not exist."),
    errors.AlreadyExists: (409, "BlobAlreadyExists", "The specified blob already exists."),
    errors.PermissionDenied: (403, "AuthorizationFailure", "This request is not authorized to perform this "
                                                           "operation."),
    errors.Conflict: (503, "ServerBusy", "The server is busy."),
    errors.WriteInterrupted: (503, "ServerBusy", "The operation was interrupted by a newer request; retry."),
    errors.SessionConflict: (409, "BlobAlreadyExists", "The specified blob already exists."),
    ClientGone: (400, "InvalidInput", "The connection closed before the body was complete."),
    errors.PiecesMissing: (503, "ServerBusy", "The blob's staged bytes are not reachable from this server."),
    errors.StorageFull: (503, "ServerBusy", "The server is out of storage space; retry later."),
    errors.StorageUnavailable: (503, "ServerBusy", "The server's storage is unavailable; retry later."),
}
INTERNAL = BlobError(500, "InternalError", "The server encountered an internal error.")


def as_blob_error(exc: Exception) -> BlobError:
    """The Azure error for an exception raised while serving a request; INTERNAL for unexpected ones."""
    if isinstance(exc, BlobError):
        return exc
    if isinstance(exc, BlobFault):
        return BlobError(FAULT_STATUS[exc.code], exc.code.value, exc.message, **exc.details)
    if isinstance(exc, sas.SasError):
        extra = {"AuthenticationErrorDetail": exc.detail} if exc.detail else {}
        return BlobError(exc.status, exc.code, exc.message, **extra)
    if isinstance(exc, ClientGone):
        return BlobError(400, "InvalidInput", "The connection closed before the body was complete.")
    if isinstance(exc, errors.ChunkdError):
        entry = lookup(CORE_ERRORS, exc)
        if entry is not None:
            status, code, message = entry
            err = BlobError(status, code, f"{message} {exc.message}".strip())
            err.cause = exc
            return err
    return INTERNAL


def decode_b64_header(value: str, name: str, size: int) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != size:
        raise BlobError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct "
                        "format.", HeaderName=name, HeaderValue=value)
    return raw


class CheckedBody:
    """Wraps a request body: counts bytes, computes MD5 (and CRC-64 when asked) and, when the body ends,
    compares them with ``Content-MD5`` / ``x-ms-content-crc64``. A mismatch raises BlobError from inside
    the engine's write, so nothing is recorded."""

    def __init__(self, body: Body, length: int, headers: Mapping[str, str], *, always_md5: bool = True) -> None:
        self._body = body
        self.length = length
        md5 = headers.get("content-md5")
        crc = headers.get("x-ms-content-crc64")
        self.want_md5 = decode_b64_header(md5, "Content-MD5", 16) if md5 else None
        self.want_crc = decode_b64_header(crc, "x-ms-content-crc64", 8) if crc else None
        # MD5 costs ~1/4 of the server's CPU per byte: computed for Put Blob (stored as the blob's Content-MD5)
        # and whenever the client sent one, not for unchecked blocks
        self.hashing = always_md5 or self.want_md5 is not None
        self.md5 = OffLoopMd5()  # on a worker thread; the CRC stays inline (chunkd.checksums says why)
        self.md5_digest = b""
        self.crc = 0
        self._gen = self._run()

    def __aiter__(self) -> CheckedBody:
        return self

    async def __anext__(self) -> bytes:
        return await self._gen.__anext__()

    async def _run(self) -> Body:
        seen = 0
        async for piece in self._body:
            seen += len(piece)
            if seen > self.length:
                raise BlobError(400, "InvalidInput", "The request body is longer than Content-Length.")
            if self.hashing:
                await self.md5.update(piece)
            if self.want_crc is not None:
                self.crc = crc64(piece, self.crc)
            yield piece
        if seen != self.length:
            raise BlobError(400, "InvalidInput", "The request body is shorter than Content-Length.")
        if self.hashing:
            self.md5_digest = await self.md5.digest()
        if self.want_md5 is not None and self.md5_digest != self.want_md5:
            raise BlobError(400, "Md5Mismatch", "The MD5 value specified in the request did not match with the "
                            "MD5 value calculated by the server.",
                            UserSpecifiedMd5=base64.b64encode(self.want_md5).decode(),
                            ServerCalculatedMd5=base64.b64encode(self.md5_digest).decode())
        if self.want_crc is not None and struct.pack("<Q", self.crc) != self.want_crc:
            raise BlobError(400, "Crc64Mismatch", "The CRC64 value specified in the request did not match with "
                            "the CRC64 value calculated by the server.")

    @property
    def md5_b64(self) -> str:
        return base64.b64encode(self.md5_digest).decode() if self.hashing else ""


def write_headers(blob: Blob) -> dict[str, str]:
    """The answer headers of a write that made a new blob version."""
    return {"ETag": f'"{blob.etag}"', "Last-Modified": http_date(blob.modified),
            "x-ms-request-server-encrypted": "true"}


def blob_headers(blob: Blob) -> dict[str, str]:
    """Property headers of Get Blob / Get Blob Properties."""
    p = blob.props
    h = {"ETag": f'"{blob.etag}"', "Last-Modified": http_date(blob.modified),
         "x-ms-creation-time": http_date(blob.created), "x-ms-blob-type": "BlockBlob",
         "x-ms-lease-state": "available", "x-ms-lease-status": "unlocked", "x-ms-server-encrypted": "true",
         "x-ms-access-tier": "Hot", "x-ms-access-tier-inferred": "true", "Accept-Ranges": "bytes",
         "Content-Type": p.content_type or "application/octet-stream"}
    for header, value in (("Content-Encoding", p.content_encoding), ("Content-Language", p.content_language),
                          ("Content-Disposition", p.content_disposition), ("Cache-Control", p.cache_control)):
        if value:
            h[header] = value
    if blob.blocks:
        h["x-ms-blob-committed-block-count"] = str(len(blob.blocks))
    for k, v in p.meta.items():
        h[f"x-ms-meta-{k}"] = v
    return h


def _prop(tag: str, value: Any) -> str:
    return f"<{tag}>{escape(str(value))}</{tag}>" if value not in ("", None) else f"<{tag} />"


def blob_xml(blob: Blob, with_meta: bool) -> str:
    p = blob.props
    props = "".join([
        _prop("Creation-Time", http_date(blob.created)), _prop("Last-Modified", http_date(blob.modified)),
        _prop("Etag", blob.etag), _prop("Content-Length", blob.size),
        _prop("Content-Type", p.content_type), _prop("Content-Encoding", p.content_encoding),
        _prop("Content-Language", p.content_language), _prop("Content-MD5", p.md5),
        _prop("Cache-Control", p.cache_control),
        _prop("Content-Disposition", p.content_disposition), "<BlobType>BlockBlob</BlobType>",
        "<AccessTier>Hot</AccessTier><AccessTierInferred>true</AccessTierInferred>",
        "<LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState>",
        "<ServerEncrypted>true</ServerEncrypted>"])
    meta = ""
    if with_meta:
        items = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in p.meta.items())
        meta = f"<Metadata>{items}</Metadata>" if items else ""  # omitted when empty, as Azurite does
    return f"<Blob><Name>{escape(blob.name)}</Name><Properties>{props}</Properties>{meta}</Blob>"


def uncommitted_xml(name: str) -> str:
    now = http_date(time.time())
    return (f"<Blob><Name>{escape(name)}</Name><Properties><Creation-Time>{now}</Creation-Time>"
            f"<Last-Modified>{now}</Last-Modified><Etag>0x0</Etag><Content-Length>0</Content-Length>"
            "<BlobType>BlockBlob</BlobType><LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState>"
            "<ServerEncrypted>true</ServerEncrypted></Properties></Blob>")


def block_list_xml(committed: Sequence[tuple[str, int]], uncommitted: Sequence[tuple[str, int]], which: str) -> str:
    def blocks(items: Sequence[tuple[str, int]]) -> str:
        return "".join(f"<Block><Name>{escape(n)}</Name><Size>{s}</Size></Block>" for n, s in items)

    parts = [XML_DECL, "<BlockList>"]
    if which in ("committed", "all"):
        parts.append(f"<CommittedBlocks>{blocks(committed)}</CommittedBlocks>")
    if which in ("uncommitted", "all"):
        parts.append(f"<UncommittedBlocks>{blocks(uncommitted)}</UncommittedBlocks>")
    parts.append("</BlockList>")
    return "".join(parts)


def new_request_id() -> str:
    return str(uuid.uuid4())


def decode_block_id(block_id: str) -> bytes:
    """The raw bytes of a ``blockid`` query value; 400 InvalidQueryParameterValue if it is not base64."""
    try:
        raw = base64.b64decode(block_id, validate=True) if block_id else b""
    except (binascii.Error, ValueError):
        raw = b""
    if not raw:
        raise BlobError(400, "InvalidQueryParameterValue", "Value for one of the query parameters specified in the "
                        "request URI is invalid.", QueryParameterName="blockid", QueryParameterValue=block_id)
    return raw


def parse_block_list(raw: bytes) -> list[tuple[str, str]]:
    """``[(Latest|Committed|Uncommitted, id)]`` from a Put Block List body; 400 InvalidXmlDocument if bad."""
    try:
        # the body is size-capped; expat refuses external entities and limits entity expansion
        root = ET.fromstring(raw)  # noqa: S314
    except ET.ParseError as exc:
        raise BlobError(400, "InvalidXmlDocument", "XML specified is not syntactically valid.") from exc
    if root.tag != "BlockList":
        raise BlobError(400, "InvalidXmlDocument", "XML specified is not syntactically valid.")
    out: list[tuple[str, str]] = []
    for el in root:
        if el.tag not in ("Latest", "Committed", "Uncommitted"):
            raise BlobError(400, "InvalidXmlNodeValue", "The value for one of the XML nodes is not in the correct "
                            "format.", XmlNodeName=el.tag)
        out.append((el.tag, (el.text or "").strip()))
    return out
