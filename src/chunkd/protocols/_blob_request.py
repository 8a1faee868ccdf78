"""Reading Azure Blob requests: Content-Length, bounded integers, content headers and metadata, conditional
headers. Every bad value becomes a :class:`BlobError` (400/411/413 in Blob XML), never a ValueError."""

from __future__ import annotations

import re

from starlette.requests import Request

from chunkd.protocols._blob_wire import BlobError
from chunkd.protocols._parse import INT64_MAX, parse_uint
from chunkd.services.blob_model import BlobProps, Conditions

_META_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # with fullmatch
META_PREFIX = "x-ms-meta-"


def content_length(request: Request, limit: int) -> int:
    """The request's Content-Length: 411 when missing, 400 when malformed, 413 above ``limit``. A body framed as
    a structured message (``x-ms-structured-body``, the SDK's ``validate_content="crc64-sm"``) is refused before
    it is read: chunkd does not decode that framing and would otherwise store the frames as the blob's bytes."""
    if "x-ms-structured-body" in request.headers:
        raise BlobError(400, "UnsupportedHeader", "One of the HTTP headers specified in the request is not "
                        "supported.", HeaderName="x-ms-structured-body")
    raw = request.headers.get("content-length")
    if raw is None:
        raise BlobError(411, "MissingContentLengthHeader", "Content-Length HTTP header is missing.")
    n = parse_uint(raw, INT64_MAX)  # the shared bounded parser: "²" or 5,000 digits are None, not ValueError
    if n is None:
        raise BlobError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct "
                        "format.", HeaderName="Content-Length", HeaderValue=raw[:64])
    if n > limit:
        raise BlobError(413, "RequestBodyTooLarge", "The request body is too large and exceeds the maximum "
                        "permissible limit.", MaxLimit=str(limit))
    return n


def metadata(request: Request) -> dict[str, str]:
    """The ``x-ms-meta-*`` headers; names must be C# identifiers (they become XML element names in listings)."""
    meta = {k[len(META_PREFIX):]: v for k, v in request.headers.items() if k.startswith(META_PREFIX)}
    for key in meta:
        if not _META_NAME.fullmatch(key):
            raise BlobError(400, "InvalidMetadata", "The metadata specified is invalid. It has characters that are "
                            "not permitted.", MetadataName=key)
    return meta


def props(request: Request, *, put_blob: bool) -> BlobProps:
    """Content headers and metadata of a write. Put Blob also takes the plain HTTP headers (``Content-Type``
    etc.) when the ``x-ms-blob-*`` ones are absent, as Azure does; Put Block List and Set Blob Properties
    take only ``x-ms-blob-*``."""
    h = request.headers

    def pick(blob_header: str, plain: str) -> str:
        return h.get(blob_header) or (h.get(plain, "") if put_blob and plain else "")

    return BlobProps(
        content_type=pick("x-ms-blob-content-type", "content-type") or "application/octet-stream",
        content_encoding=pick("x-ms-blob-content-encoding", "content-encoding"),
        content_language=pick("x-ms-blob-content-language", "content-language"),
        content_disposition=pick("x-ms-blob-content-disposition", ""),
        cache_control=pick("x-ms-blob-cache-control", "cache-control"),
        md5=h.get("x-ms-blob-content-md5", ""),
        meta=metadata(request),
    )


def conditions(request: Request) -> Conditions:
    return Conditions(if_match=request.headers.get("if-match", ""),
                      if_none_match=request.headers.get("if-none-match", ""))
