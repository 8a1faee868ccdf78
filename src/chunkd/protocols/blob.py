"""Azure-Blob-compatible container endpoint, path-style: ``/blob/{account}/{container}[/{blob}]``.

The target of Industry Data ``sessionUrl``\\ s: every request carries a service SAS (no Authorization header)
that :mod:`chunkd.auth.sas` verifies in Azure's order, then the container's state is checked (gone or reset
-> 404 ``ContainerNotFound``; finalised by validate -> writes 403 ``AuthorizationFailure``). Operations: Put
Blob, Put Block, Put Block List, Get Block List, Get Blob (ranges), Get Blob Properties, List Blobs, Delete
Blob, Get Container Properties. Errors are Azure's XML with ``x-ms-error-code``. Differences from Azure and
Azurite are listed in docs/blob.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from typing import Any
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from chunkd.auth import sas
from chunkd.core import errors
from chunkd.core.body import ClientGone
from chunkd.core.engine import Engine
from chunkd.core.models import Resource
from chunkd.protocols import _blob_wire as wire
from chunkd.protocols._blob_store import (
    OPEN,
    BlobError,
    BlobProps,
    BlobStore,
    Conditions,
    blob_not_found,
    container_not_found,
    finalised,
)
from chunkd.protocols._http import RangeNotSatisfiable, first_query, http_date, parse_range, request_body

log = logging.getLogger("chunkd.blob")

DEFAULT_VERSION = "2025-11-05"
_MIN_VERSION = "2009-09-19"
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAX_PUT_BLOB = 5000 << 20
MAX_BLOCK = 4000 << 20
MAX_BLOCK_LIST_BODY = 16 << 20
_WRITE = frozenset("wacd")

# core error -> (status, x-ms-error-code, message)
_ERRORS: dict[type[errors.ChunkdError], tuple[int, str, str]] = {
    errors.TooLarge: (413, "RequestBodyTooLarge", "The request body is too large."),
    errors.SessionNotFound: (400, "InvalidBlockList", "The specified block list is invalid."),
    errors.SessionGone: (400, "InvalidBlockList", "The specified block list is invalid."),
    errors.InvalidInput: (400, "InvalidInput", "One of the request inputs is not valid."),
    errors.NotFound: (404, "BlobNotFound", "The specified blob does not exist."),
    errors.AlreadyExists: (409, "BlobAlreadyExists", "The specified blob already exists."),
    errors.PermissionDenied: (403, "AuthorizationFailure", "This request is not authorized to perform this "
                                                           "operation."),
    errors.Conflict: (503, "ServerBusy", "The server is busy."),
}


def _from_core(exc: errors.ChunkdError) -> BlobError:
    for cls in type(exc).__mro__:
        if cls in _ERRORS:
            status, code, message = _ERRORS[cls]
            return BlobError(status, code, f"{message} {exc.message}".strip())
    return BlobError(500, "InternalError", "The server encountered an internal error.")


def _content_length(request: Request, limit: int) -> int:
    raw = request.headers.get("content-length")
    if raw is None:
        raise BlobError(411, "MissingContentLengthHeader", "Content-Length HTTP header is missing.")
    if not raw.isdigit():
        raise BlobError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct "
                        "format.", HeaderName="Content-Length", HeaderValue=raw)
    n = int(raw)
    if n > limit:
        raise BlobError(413, "RequestBodyTooLarge", "The request body is too large and exceeds the maximum "
                        "permissible limit.", MaxLimit=str(limit))
    return n


def _props(request: Request, *, put_blob: bool) -> BlobProps:
    h = request.headers
    ctype = h.get("x-ms-blob-content-type") or (h.get("content-type") if put_blob else "") \
        or "application/octet-stream"
    return _check_meta(BlobProps(
        content_type=ctype,
        content_encoding=h.get("x-ms-blob-content-encoding") or (h.get("content-encoding", "") if put_blob else ""),
        content_language=h.get("x-ms-blob-content-language") or (h.get("content-language", "") if put_blob else ""),
        content_disposition=h.get("x-ms-blob-content-disposition", ""),
        cache_control=h.get("x-ms-blob-cache-control") or (h.get("cache-control", "") if put_blob else ""),
        md5=h.get("x-ms-blob-content-md5", ""),
        meta={k[len("x-ms-meta-"):]: v for k, v in h.items() if k.startswith("x-ms-meta-")},
    ))


_META_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_NAME = 1024


def _check_meta(props: BlobProps) -> BlobProps:
    """Metadata names must be C# identifiers (they become XML element names in listings)."""
    for key in props.meta:
        if not _META_NAME.match(key):
            raise BlobError(400, "InvalidMetadata", "The metadata specified is invalid. It has characters that are "
                            "not permitted.", MetadataName=key)
    return props


def _conditions(request: Request) -> Conditions:
    return Conditions(if_match=request.headers.get("if-match", ""),
                      if_none_match=request.headers.get("if-none-match", ""))


def _write_headers(blob: Resource) -> dict[str, str]:
    return {"ETag": f'"{blob.data["etag"]}"', "Last-Modified": http_date(blob.data["modified"]),
            "x-ms-request-server-encrypted": "true"}


Op = Callable[[Request, Resource, str, dict[str, str]], Awaitable[Response]]


class BlobAPI:
    """Routes of the container endpoint. ``key`` is the account key SAS tokens are signed with."""

    def __init__(self, engine: Engine, key: bytes, account: str = "chunkd") -> None:
        self.engine = engine
        self.store = BlobStore(engine)
        self.key = key
        self.account = account
        # (method, on a blob?, comp) -> (handler, SAS permission letter)
        self._ops: dict[tuple[str, bool, str], tuple[Op, str]] = {
            ("PUT", True, ""): (self.put_blob, "w"),
            ("PUT", True, "block"): (self.put_block, "w"),
            ("PUT", True, "blocklist"): (self.put_block_list, "w"),
            ("GET", True, "blocklist"): (self.get_block_list, "r"),
            ("GET", True, ""): (self.get_blob, "r"),
            ("HEAD", True, ""): (self.get_blob, "r"),
            ("DELETE", True, ""): (self.delete_blob, "d"),
            ("GET", False, "list"): (self.list_blobs, "l"),
            ("GET", False, ""): (self.container_properties, "r"),
            ("HEAD", False, ""): (self.container_properties, "r"),
        }

    @property
    def routes(self) -> list[BaseRoute]:
        methods = ["GET", "HEAD", "PUT", "DELETE", "POST", "PATCH"]
        return [Route("/blob/{account}/{container}", self.endpoint, methods=methods),
                Route("/blob/{account}/{container}/{blob:path}", self.endpoint, methods=methods)]

    async def endpoint(self, request: Request) -> Response:
        rid = wire.new_request_id()
        head = request.method == "HEAD"
        try:
            response = await self._dispatch(request)
        except BlobError as exc:
            response = wire.error_response(exc, rid, head)
        except sas.SasError as exc:
            extra = {"AuthenticationErrorDetail": exc.detail} if exc.detail else {}
            response = wire.error_response(BlobError(exc.status, exc.code, exc.message, **extra), rid, head)
        except ClientGone:
            response = wire.error_response(BlobError(400, "InvalidInput", "The connection closed before the body "
                                                                          "was complete."), rid, head)
        except errors.ChunkdError as exc:
            response = wire.error_response(_from_core(exc), rid, head)
        except Exception:
            log.exception("unexpected error in %s %s", request.method, request.url.path)
            response = wire.error_response(BlobError(500, "InternalError", "The server encountered an internal "
                                                                            "error."), rid, head)
        response.headers["x-ms-request-id"] = rid
        response.headers["x-ms-version"] = request.headers.get("x-ms-version") or DEFAULT_VERSION
        if "x-ms-client-request-id" in request.headers:
            response.headers["x-ms-client-request-id"] = request.headers["x-ms-client-request-id"]
        return response

    async def _dispatch(self, request: Request) -> Response:
        version = request.headers.get("x-ms-version")
        if version is not None and (not _VERSION.match(version) or version < _MIN_VERSION):
            raise BlobError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct "
                            "format.", HeaderName="x-ms-version", HeaderValue=version)
        query = first_query(request.scope)
        for name in ("sig", "blockid"):  # a raw '+' in base64 decodes as a space
            if name in query:
                query[name] = query[name].replace(" ", "+")
        cname = request.path_params["container"]
        name = request.path_params.get("blob", "")
        if len(name) > MAX_NAME:
            raise BlobError(400, "InvalidResourceName", "The specified resource name length is not within the "
                            "permissible limits.")
        comp = query.get("comp", "")
        if not name and comp != "list" and query.get("restype") != "container":
            raise BlobError(400, "InvalidQueryParameterValue", "Value for one of the query parameters specified "
                            "in the request URI is invalid.", QueryParameterName="restype")
        op = self._ops.get((request.method, bool(name), comp))
        if request.method not in ("GET", "HEAD", "PUT", "DELETE"):
            raise BlobError(405, "UnsupportedHttpVerb", "The resource doesn't support specified Http Verb.")
        if op is None:
            raise BlobError(400, "UnsupportedQueryParameter" if comp else "UnsupportedHttpVerb",
                            f"chunkd's container endpoint does not support {request.method} with comp={comp!r}.")
        handler, letter = op
        account = request.path_params["account"]
        sas.verify(self.key, account, cname, query, scheme=request.url.scheme, permission=letter, blob=name)
        container = await self.store.container(cname)
        if container is None:
            raise container_not_found()
        if letter in _WRITE and container.data.get("state") != OPEN:
            raise finalised()
        return await handler(request, container, name, query)

    # -- writes ------------------------------------------------------------------------------------
    async def put_blob(self, request: Request, container: Resource, name: str, query: dict[str, str]) -> Response:
        blob_type = request.headers.get("x-ms-blob-type")
        if blob_type is None:
            raise BlobError(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not "
                            "specified.", HeaderName="x-ms-blob-type")
        if blob_type != "BlockBlob":
            raise BlobError(400, "InvalidHeaderValue", "chunkd supports block blobs only.",
                            HeaderName="x-ms-blob-type", HeaderValue=blob_type)
        length = _content_length(request, MAX_PUT_BLOB)
        body = wire.CheckedBody(request_body(request), length, request.headers)
        blob = await self.store.put_blob(container, name, body, _props(request, put_blob=True), _conditions(request),
                                         digest=lambda: body.md5_b64)
        headers = _write_headers(blob)
        headers["Content-MD5"] = body.md5_b64
        if body.want_crc is not None:
            headers["x-ms-content-crc64"] = wire.crc64_header(body.crc)
        return Response(status_code=201, headers=headers)

    async def put_block(self, request: Request, container: Resource, name: str, query: dict[str, str]) -> Response:
        block_id = query.get("blockid", "")
        raw = _decode_block_id(block_id)
        if len(raw) > 64:
            raise BlobError(400, "InvalidBlockId", "The specified block ID is invalid. The block ID must be Base64-"
                            "encoded and at most 64 bytes before encoding.")
        await self._check_id_length(container.id, name, block_id)
        length = _content_length(request, MAX_BLOCK)
        body = wire.CheckedBody(request_body(request), length, request.headers, always_md5=False)
        await self.store.stage_block(container, name, block_id, length, body)
        headers = {"x-ms-request-server-encrypted": "true"}
        if body.hashing:
            headers["Content-MD5"] = body.md5_b64
        if body.want_crc is not None:
            headers["x-ms-content-crc64"] = wire.crc64_header(body.crc)
        return Response(status_code=201, headers=headers)

    async def _check_id_length(self, cid: str, name: str, block_id: str) -> None:
        """Azure requires every block id of a blob to have the same encoded length. The ids already there all
        have one length, so one staged and one committed id suffice (constant work per Put Block)."""
        others = [await self.store.any_block_id(cid, name)]
        blob = await self.store.get_blob(cid, name)
        if blob is not None and blob.data.get("blocks"):
            others.append(str(blob.data["blocks"][0][0]))
        if any(o is not None and len(o) != len(block_id) for o in others):
            raise BlobError(400, "InvalidBlobOrBlock", "The specified blob or block content is invalid.",
                            Reason="all block ids of a blob must have the same length")

    async def put_block_list(self, request: Request, container: Resource, name: str,
                             query: dict[str, str]) -> Response:
        length = _content_length(request, MAX_BLOCK_LIST_BODY)
        body = wire.CheckedBody(request_body(request), length, request.headers)
        raw = b"".join([piece async for piece in body])
        wanted = _parse_block_list(raw)
        blob = await self.store.commit_blocks(container, name, wanted, _props(request, put_blob=False),
                                              _conditions(request))
        return Response(status_code=201, headers=_write_headers(blob))

    async def delete_blob(self, request: Request, container: Resource, name: str, query: dict[str, str]) -> Response:
        blob = await self.store.get_blob(container.id, name)
        if blob is None and not await self.store.blocks(container.id, name):
            raise blob_not_found()
        cond = _conditions(request)
        if cond.if_match or cond.if_none_match:
            cond.check_write(blob)
        await self.store.delete_blob(container.id, name)
        return Response(status_code=202, headers={"x-ms-delete-type-permanent": "true"})

    # -- reads -------------------------------------------------------------------------------------
    async def get_blob(self, request: Request, container: Resource, name: str, query: dict[str, str]) -> Response:
        blob = await self.store.get_blob(container.id, name)
        if blob is None:
            raise blob_not_found()
        etag = str(blob.data["etag"])
        if_match, if_none = request.headers.get("if-match"), request.headers.get("if-none-match")
        if if_match and if_match.strip() != "*" and etag not in {t.strip().strip('"') for t in if_match.split(",")}:
            raise BlobError(412, "ConditionNotMet", "The condition specified using HTTP conditional header(s) is "
                            "not met.")
        headers = wire.blob_headers(blob)
        if if_none and (if_none.strip() == "*" or etag in {t.strip().strip('"') for t in if_none.split(",")}):
            return Response(status_code=304, headers={k: headers[k] for k in ("ETag", "Last-Modified")})
        size = int(blob.data["size"])
        md5 = str(blob.data.get("md5", ""))
        try:
            rng = parse_range(request.headers.get("x-ms-range") or request.headers.get("range"), size)
        except RangeNotSatisfiable as exc:
            raise BlobError(416, "InvalidRange", "The range specified is invalid for the current size of the "
                            "resource.") from exc
        start, end = rng if rng else (0, size)
        headers["Content-Length"] = str(end - start)
        status = 200
        if rng:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
            if md5:
                headers["x-ms-blob-content-md5"] = md5
        elif md5:
            headers["Content-MD5"] = md5
        # Content-Type stays in ``headers``: as media_type Starlette would append a charset to text/* types
        if request.method == "HEAD":
            headers.pop("Content-Range", None)
            headers["Content-Length"] = str(size)
            return Response(status_code=200, headers=headers)
        if request.headers.get("x-ms-range-get-content-md5", "").lower() == "true":
            if end - start > 4 << 20:
                raise BlobError(400, "OutOfRangeInput", "x-ms-range-get-content-md5 needs a range of at most 4 MiB.")
            data = b"".join([p async for p in self.store.read(blob, start, end)])
            headers["Content-MD5"] = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
            return Response(data, status_code=status, headers=headers)
        return StreamingResponse(self.store.read(blob, start, end), status_code=status, headers=headers)

    async def get_block_list(self, request: Request, container: Resource, name: str,
                             query: dict[str, str]) -> Response:
        which = query.get("blocklisttype", "committed").lower()
        if which not in ("committed", "uncommitted", "all"):
            raise BlobError(400, "InvalidQueryParameterValue", "Value for one of the query parameters specified in "
                            "the request URI is invalid.", QueryParameterName="blocklisttype",
                            QueryParameterValue=which)
        blob = await self.store.get_blob(container.id, name)
        staged = await self.store.blocks(container.id, name)
        if blob is None and not staged:
            raise blob_not_found()
        headers: dict[str, str] = {}
        if blob is not None:
            headers = {"ETag": f'"{blob.data["etag"]}"', "Last-Modified": http_date(blob.data["modified"]),
                       "x-ms-blob-content-length": str(blob.data["size"])}
        committed = list(blob.data.get("blocks", [])) if blob else []
        return Response(wire.block_list_xml(committed, staged, which), headers=headers, media_type="application/xml")

    async def list_blobs(self, request: Request, container: Resource, name: str, query: dict[str, str]) -> Response:
        prefix, delimiter, marker = query.get("prefix", ""), query.get("delimiter", ""), query.get("marker", "")
        raw_max = query.get("maxresults", "5000")
        if not raw_max.isdigit() or not 1 <= int(raw_max) <= 5000:
            raise BlobError(400, "OutOfRangeQueryParameterValue", "One of the query parameters specified in the "
                            "request URI is outside the permissible range.", QueryParameterName="maxresults",
                            QueryParameterValue=raw_max, MinimumAllowed="1", MaximumAllowed="5000")
        limit = int(raw_max)
        include = {i.strip().lower() for i in query.get("include", "").split(",") if i.strip()}
        blobs = await self.store.list_blobs(container.id)
        entries: dict[str, Resource | None] = {str(b.data["name"]): b for b in blobs}
        if "uncommittedblobs" in include:
            for n in await self.store.uncommitted_names(container.id):
                entries.setdefault(n, None)
        names = sorted((n for n in entries if n.startswith(prefix) and n >= marker), key=lambda n: n.encode())
        items: list[str] = []
        next_marker = ""
        last_prefix = None
        for n in names:
            rest = n[len(prefix):]
            group = prefix + rest[:rest.index(delimiter) + len(delimiter)] if delimiter and delimiter in rest else None
            if group is not None and group == last_prefix:
                continue
            if len(items) >= limit:
                next_marker = n
                break
            if group is not None:
                last_prefix = group
                items.append(f"<BlobPrefix><Name>{escape(group)}</Name></BlobPrefix>")
            else:
                res = entries[n]
                items.append(wire.blob_xml(res, "metadata" in include) if res else wire.uncommitted_xml(n))
        base = f"{request.url.scheme}://{request.url.netloc}/blob/{request.path_params['account']}"
        parts = [wire.XML_DECL, f'<EnumerationResults ServiceEndpoint="{escape(base)}" '
                 f'ContainerName="{escape(container.id)}">',
                 f"<Prefix>{escape(prefix)}</Prefix>" if prefix else "<Prefix />",
                 f"<Marker>{escape(marker)}</Marker>" if marker else "<Marker />",
                 f"<MaxResults>{limit}</MaxResults>",
                 f"<Delimiter>{escape(delimiter)}</Delimiter>" if delimiter else "",
                 "<Blobs>", *items, "</Blobs>",
                 f"<NextMarker>{escape(next_marker)}</NextMarker>" if next_marker else "<NextMarker />",
                 "</EnumerationResults>"]
        return Response("".join(parts), media_type="application/xml")

    async def container_properties(self, request: Request, container: Resource, name: str,
                                   query: dict[str, str]) -> Response:
        """A service SAS does not cover container-level operations other than List Blobs (Azure and Azurite
        both answer 403), so neither does chunkd."""
        raise BlobError(403, "AuthorizationPermissionMismatch", "This request is not authorized to perform this "
                        "operation using this permission.")


def _decode_block_id(block_id: str) -> bytes:
    try:
        raw = base64.b64decode(block_id, validate=True) if block_id else b""
    except (binascii.Error, ValueError):
        raw = b""
    if not raw:
        raise BlobError(400, "InvalidQueryParameterValue", "Value for one of the query parameters specified in the "
                        "request URI is invalid.", QueryParameterName="blockid", QueryParameterValue=block_id)
    return raw


def _parse_block_list(raw: bytes) -> list[tuple[str, str]]:
    """``[(Latest|Committed|Uncommitted, id)]`` from a Put Block List body; 400 InvalidXmlDocument if bad."""
    try:
        # the body is size-capped; expat refuses external entities and limits entity expansion
        root = ET.fromstring(raw)  # noqa: S314
    except ET.ParseError as exc:
        raise BlobError(400, "InvalidXmlDocument", "XML specified is not syntactically valid.") from exc
    if root.tag != "BlockList":
        raise BlobError(400, "InvalidXmlDocument", "XML specified is not syntactically valid.")
    out: list[tuple[str, Any]] = []
    for el in root:
        if el.tag not in ("Latest", "Committed", "Uncommitted"):
            raise BlobError(400, "InvalidXmlNodeValue", "The value for one of the XML nodes is not in the correct "
                            "format.", XmlNodeName=el.tag)
        out.append((el.tag, (el.text or "").strip()))
    return out
