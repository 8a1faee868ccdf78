"""Azure-Blob-compatible container endpoint, path-style as Microsoft's emulator lays it out:
``/{account}/{container}[/{blob}]`` (the Industry Data ``sessionUrl``), and the older ``/blob/{account}/...``.

Every request carries a service SAS (no Authorization header) that :mod:`chunkd.auth.sas` verifies in Azure's
order, then the container's state is checked (gone or reset -> 404 ``ContainerNotFound``; finalised by
validate -> writes 403 ``AuthorizationFailure``). Operations: Put Blob, Put Block, Put Block List, Get Block
List, Get Blob (ranges), Get Blob Properties, Set Blob Metadata / Properties (:mod:`._blob_props`), List Blobs,
Delete Blob, Blob Batch (:mod:`._blob_batch`), CORS (:mod:`._blob_cors`). Errors are Azure's XML with
``x-ms-error-code``. Differences from Azure and Azurite are listed in docs/blob.md.

This module only translates HTTP: containers, blobs and blocks are the domain services of
:mod:`chunkd.services.blobs`, whose faults (:class:`~chunkd.services.blob_model.BlobFault`) get their status in
:mod:`._blob_wire`.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from chunkd.auth import sas
from chunkd.auth.authenticator import note_principal
from chunkd.core import errors
from chunkd.core.engine import Engine
from chunkd.protocols import _blob_batch as batch
from chunkd.protocols import _blob_list as listing
from chunkd.protocols import _blob_props as props
from chunkd.protocols import _blob_request as req
from chunkd.protocols import _blob_wire as wire
from chunkd.protocols._blob_cors import BlobCors
from chunkd.protocols._blob_wire import BlobError
from chunkd.protocols._http import (
    RangeNotSatisfiable,
    first_query,
    http_date,
    parse_range,
    public_base,
    public_scheme,
    request_body,
)
from chunkd.services.blob_model import Blob, Conditions, Container, blob_not_found, etag_in
from chunkd.services.blobs import BlobServices

log = logging.getLogger("chunkd.blob")

DEFAULT_VERSION = "2025-11-05"
_MIN_VERSION = "2009-09-19"
_VERSION = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # fullmatch: "$" would let a final newline through
MAX_PUT_BLOB = 5000 << 20
MAX_BLOCK = 4000 << 20
MAX_BLOCK_LIST_BODY = 16 << 20
MAX_NAME = 1024
_WRITE = frozenset("wacd")
METHODS = ["GET", "HEAD", "PUT", "DELETE", "POST", "PATCH", "OPTIONS"]

# First path segments other families own: an account named so would shadow them (or be shadowed). The admin
# API's /chunkd/v1 shares its first segment with the default account, which is safe: "v1" is no valid
# container name (Azure's are 3-63 characters) and the admin routes are matched first (server/app.py).
RESERVED = frozenset({"ImageStore", "$", "v1.0", "beta", "print-upload", "files", "blob", "dashboard", "metrics",
                      "healthz", "readyz"})
_ACCOUNT = re.compile(r"[a-z0-9]{3,24}")


def check_account(name: str) -> str:
    """``name`` if it can be the blob account (Azure's rule: 3-24 lower-case letters and digits, and none of
    :data:`RESERVED`); ValueError otherwise."""
    if not _ACCOUNT.fullmatch(name):
        raise ValueError(f"blob account name {name!r} must be 3-24 lower-case letters and digits, as on Azure")
    if name.lower() in {r.lower() for r in RESERVED}:
        raise ValueError(f"blob account name {name!r} would collide with the path /{name} of another API family; "
                         f"choose another one (not {', '.join(sorted(RESERVED))})")
    return name


Op = Callable[[Request, Any, str, dict[str, str]], Awaitable[Response]]  # the container, or its id (Put Block)


class BlobAPI:
    """Routes of the container endpoint. ``key`` is the account key SAS tokens are signed with; ``account``
    must pass :func:`check_account`; ``cors_origins`` are the web origins browsers may call it from."""

    def __init__(self, engine: Engine, key: bytes, account: str = "chunkd", cors_origins: Iterable[str] = ()) -> None:
        self.engine = engine
        self.services = BlobServices.over(engine)
        self.blobs = self.services.blobs
        self.key = key
        self.account = check_account(account)
        self.cors = BlobCors(cors_origins)
        # (method, on a blob?, comp) -> (handler, SAS permission letter; "" = checked per subrequest)
        self._ops: dict[tuple[str, bool, str], tuple[Op, str]] = {
            ("PUT", True, ""): (self.put_blob, "w"),
            ("PUT", True, "block"): (self.put_block, "w"),
            ("PUT", True, "blocklist"): (self.put_block_list, "w"),
            ("PUT", True, "metadata"): (lambda r, c, n, q: props.set_metadata(self.blobs, r, c, n), "w"),
            ("PUT", True, "properties"): (lambda r, c, n, q: props.set_properties(self.blobs, r, c, n), "w"),
            ("GET", True, "blocklist"): (self.get_block_list, "r"),
            ("GET", True, ""): (self.get_blob, "r"),
            ("HEAD", True, ""): (self.get_blob, "r"),
            ("DELETE", True, ""): (self.delete_blob, "d"),
            ("GET", False, "list"): (self.list_blobs, "l"),
            ("POST", False, "batch"): (self.batch, ""),
            ("GET", False, ""): (self.container_properties, "r"),
            ("HEAD", False, ""): (self.container_properties, "r"),
        }

    @property
    def routes(self) -> list[BaseRoute]:
        """The emulator layout (Azure's Go SDK, as in rclone and AzCopy, reads a URL on an IP host only so),
        the ``/blob/{account}`` alias, and their account-level paths (Blob errors instead of a plain 404).
        Mount after every other family's routes (see :data:`RESERVED`)."""
        a = self.account
        paths = ["/blob/{account}/{container}", "/blob/{account}/{container}/{blob:path}", "/blob/{account}",
                 "/blob/{account}/", "/blob", "/blob/", f"/{a}/{{container}}", f"/{a}/{{container}}/{{blob:path}}",
                 f"/{a}", f"/{a}/"]
        return [Route(path, self.endpoint, methods=METHODS) for path in paths]

    async def endpoint(self, request: Request) -> Response:
        rid = wire.new_request_id()
        head = request.method == "HEAD"
        try:
            response = self.cors.preflight(request) if request.method == "OPTIONS" else await self._dispatch(request)
        except Exception as exc:
            err = wire.as_blob_error(exc)
            if err is wire.INTERNAL:
                log.exception("unexpected error in %s %s", request.method, request.url.path)
            response = wire.error_response(err, rid, head)
        response.headers["x-ms-request-id"] = rid
        response.headers["x-ms-version"] = request.headers.get("x-ms-version") or DEFAULT_VERSION
        if "x-ms-client-request-id" in request.headers:
            response.headers["x-ms-client-request-id"] = request.headers["x-ms-client-request-id"]
        self.cors.decorate(request, response)
        return response

    def _account(self, request: Request) -> str:
        return str(request.path_params.get("account", self.account))

    async def _dispatch(self, request: Request) -> Response:
        version = request.headers.get("x-ms-version")
        if version is not None and (not _VERSION.fullmatch(version) or version < _MIN_VERSION):
            raise BlobError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct "
                            "format.", HeaderName="x-ms-version", HeaderValue=version)
        if "container" not in request.path_params:
            if "account" not in request.path_params and request.url.path.startswith("/blob"):
                raise BlobError(400, "InvalidUri", "The requested URI does not represent any resource on the server.")
            raise BlobError(403, "AuthorizationResourceTypeMismatch", "This request is not authorized to perform "
                            "this operation using this resource type.",
                            Reason="a container SAS does not cover account-level operations")
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
        if op is None and (not comp or request.method not in ("GET", "HEAD", "PUT", "DELETE", "POST")):
            raise BlobError(405, "UnsupportedHttpVerb", "The resource doesn't support specified Http Verb.")
        if op is None:
            raise BlobError(400, "UnsupportedQueryParameter", f"chunkd's container endpoint does not support "
                            f"{request.method} with comp={comp[:64]!r}.")
        handler, letter = op
        sas.verify(self.key, self._account(request), cname, query, scheme=public_scheme(request), permission=letter,
                   blob=name)
        note_principal(request.scope, f"sas:{cname}")
        if handler == self.put_block:  # the container's state is checked inside the block's own transactions
            return await self.put_block(request, cname, name, query)
        container = await self.services.containers.require(cname, writable=letter in _WRITE)
        return await handler(request, container, name, query)

    # -- writes ------------------------------------------------------------------------------------
    async def put_blob(self, request: Request, container: Container, name: str, query: dict[str, str]) -> Response:
        blob_type = request.headers.get("x-ms-blob-type")
        if blob_type is None:
            raise BlobError(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not "
                            "specified.", HeaderName="x-ms-blob-type")
        if blob_type != "BlockBlob":
            raise BlobError(400, "InvalidHeaderValue", "chunkd supports block blobs only.",
                            HeaderName="x-ms-blob-type", HeaderValue=blob_type)
        length = req.content_length(request, MAX_PUT_BLOB)
        body = wire.CheckedBody(request_body(request), length, request.headers)
        blob = await self.blobs.put(container, name, body, req.props(request, put_blob=True), req.conditions(request),
                                    digest=lambda: body.md5_b64)
        headers = wire.write_headers(blob)
        headers["Content-MD5"] = body.md5_b64
        if body.want_crc is not None:
            headers["x-ms-content-crc64"] = wire.crc64_header(body.crc)
        return Response(status_code=201, headers=headers)

    async def put_block(self, request: Request, cid: str, name: str, query: dict[str, str]) -> Response:
        """Put Block: two metadata transactions in all (no container read: the block's claim and record
        check that the container is open, and the SAS's expiry bounds the container's)."""
        block_id = query.get("blockid", "")
        raw = wire.decode_block_id(block_id)
        if len(raw) > 64:
            raise BlobError(400, "InvalidBlockId", "The specified block ID is invalid. The block ID must be Base64-"
                            "encoded and at most 64 bytes before encoding.")
        length = req.content_length(request, MAX_BLOCK)
        body = wire.CheckedBody(request_body(request), length, request.headers, always_md5=False)
        await self.services.blocks.stage(cid, name, block_id, length, body)
        headers = {"x-ms-request-server-encrypted": "true"}
        if body.hashing:
            headers["Content-MD5"] = body.md5_b64
        if body.want_crc is not None:
            headers["x-ms-content-crc64"] = wire.crc64_header(body.crc)
        return Response(status_code=201, headers=headers)

    async def put_block_list(self, request: Request, container: Container, name: str,
                             query: dict[str, str]) -> Response:
        length = req.content_length(request, MAX_BLOCK_LIST_BODY)
        body = wire.CheckedBody(request_body(request), length, request.headers)
        raw = b"".join([piece async for piece in body])
        wanted = wire.parse_block_list(raw)
        blob = await self.blobs.commit_block_list(container, name, wanted, req.props(request, put_blob=False),
                                                  req.conditions(request))
        return Response(status_code=201, headers=wire.write_headers(blob))

    async def delete_blob(self, request: Request, container: Container, name: str, query: dict[str, str]) -> Response:
        await self.blobs.delete(container, name, req.conditions(request))
        return Response(status_code=202, headers={"x-ms-delete-type-permanent": "true"})

    async def batch(self, request: Request, container: Container, name: str, query: dict[str, str]) -> Response:
        """Blob Batch of Delete Blob subrequests. The batch's SAS must be valid for the container; each
        subrequest needs ``d`` from its own SAS or, when it carries none, from the batch's."""
        length = req.content_length(request, batch.MAX_BODY)
        body = b"".join([p async for p in wire.CheckedBody(request_body(request), length, request.headers,
                                                            always_md5=False)])
        version = request.headers.get("x-ms-version") or DEFAULT_VERSION
        account = self._account(request)
        prefixes = (f"/{account}/{container.id}/", f"/blob/{account}/{container.id}/")
        try:
            subs = batch.parse(request.headers.get("content-type", ""), body, prefixes)
        except BlobError as err:
            return batch.response([(None, batch.error_part(err, version))])

        async def delete(sub: batch.SubRequest) -> None:
            if len(sub.blob) > MAX_NAME:
                raise BlobError(400, "InvalidResourceName", "The specified resource name length is not within the "
                                "permissible limits.")
            sas.verify(self.key, account, container.id, sub.query if "sig" in sub.query else query,
                       scheme=public_scheme(request), permission="d", blob=sub.blob)
            current = await self.services.containers.require(container.id, writable=True)
            await self.blobs.delete(current, sub.blob, Conditions(if_match=sub.headers.get("if-match", ""),
                                                                  if_none_match=sub.headers.get("if-none-match", "")))

        def unexpected(exc: Exception) -> None:
            log.error("unexpected error in a batch subrequest", exc_info=exc)

        return batch.response(await batch.run(subs, version, delete, unexpected))

    # -- reads -------------------------------------------------------------------------------------
    async def get_blob(self, request: Request, container: Container, name: str, query: dict[str, str]) -> Response:
        blob = await self.blobs.get(container.id, name)
        if blob is None:
            raise blob_not_found()
        etag = blob.etag
        if_match, if_none = request.headers.get("if-match"), request.headers.get("if-none-match")
        if if_match and if_match.strip() != "*" and not etag_in(etag, if_match):
            raise BlobError(412, "ConditionNotMet", "The condition specified using HTTP conditional header(s) is "
                            "not met.")
        headers = wire.blob_headers(blob)
        if if_none and (if_none.strip() == "*" or etag_in(etag, if_none)):
            return Response(status_code=304, headers={k: headers[k] for k in ("ETag", "Last-Modified")})
        size = blob.size
        md5 = blob.props.md5
        try:
            rng = parse_range(request.headers.get("x-ms-range") or request.headers.get("range"), size)
        except RangeNotSatisfiable as exc:
            raise BlobError(416, "InvalidRange", "The range specified is invalid for the current size of the "
                            "resource.") from exc
        except errors.InvalidInput as exc:  # a position beyond 2^63 - 1 (parse_range refuses it)
            raise BlobError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct "
                            "format.", HeaderName="Range") from exc
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
            data = b"".join([p async for p in self.blobs.read(blob, start, end)])
            headers["Content-MD5"] = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
            return Response(data, status_code=status, headers=headers)
        return StreamingResponse(self.blobs.read(blob, start, end), status_code=status, headers=headers)

    async def get_block_list(self, request: Request, container: Container, name: str,
                             query: dict[str, str]) -> Response:
        which = query.get("blocklisttype", "committed").lower()
        if which not in ("committed", "uncommitted", "all"):
            raise BlobError(400, "InvalidQueryParameterValue", "Value for one of the query parameters specified in "
                            "the request URI is invalid.", QueryParameterName="blocklisttype",
                            QueryParameterValue=which)
        blob: Blob | None = await self.blobs.get(container.id, name)
        staged = await self.services.blocks.staged(container.id, name)
        if blob is None and not staged:
            raise blob_not_found()
        headers: dict[str, str] = {}
        if blob is not None:
            headers = {"ETag": f'"{blob.etag}"', "Last-Modified": http_date(blob.modified),
                       "x-ms-blob-content-length": str(blob.size)}
        committed = blob.blocks if blob else ()
        uncommitted = [(bid, piece.size) for bid, piece in staged.items()]
        return Response(wire.block_list_xml(committed, uncommitted, which), headers=headers,
                        media_type="application/xml")

    async def list_blobs(self, request: Request, container: Container, name: str, query: dict[str, str]) -> Response:
        layout = f"/blob/{request.path_params['account']}" if "account" in request.path_params else f"/{self.account}"
        return await listing.list_blobs(self.services, container, query, f"{public_base(request)}{layout}")

    async def container_properties(self, request: Request, container: Container, name: str,
                                   query: dict[str, str]) -> Response:
        """A service SAS does not cover container-level operations other than List Blobs (Azure and Azurite
        both answer 403), so neither does chunkd."""
        raise BlobError(403, "AuthorizationPermissionMismatch", "This request is not authorized to perform this "
                        "operation using this permission.")

