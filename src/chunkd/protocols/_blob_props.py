"""Set Blob Metadata (``PUT ?comp=metadata``) and Set Blob Properties (``PUT ?comp=properties``): change a
committed blob's metadata or content headers without touching its bytes.

As on Azure: Set Blob Metadata replaces all metadata with the request's ``x-ms-meta-*`` headers (none = clear
it); Set Blob Properties sets all six content headers at once from ``x-ms-blob-content-type``, ``-encoding``,
``-language``, ``-disposition``, ``-md5`` and ``x-ms-blob-cache-control`` -- one left out is cleared (the
blob's Content-MD5 too). Both need SAS permission ``w``, honour ``If-Match`` / ``If-None-Match``, give the
blob a new ETag and Last-Modified, answer 200, and 404 ``BlobNotFound`` for a blob with only staged blocks.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from chunkd.core.resources import Resource
from chunkd.protocols import _blob_request as req
from chunkd.protocols import _blob_wire as wire
from chunkd.protocols._blob_store import BlobError, BlobStore
from chunkd.protocols._http import http_date

_CONTENT_FIELDS = ("contentType", "contentEncoding", "contentLanguage", "contentDisposition", "cacheControl", "md5")
_UNSUPPORTED = ("x-ms-blob-content-length", "x-ms-sequence-number-action", "x-ms-blob-sequence-number")


def _answer(blob: Resource) -> Response:
    return Response(status_code=200, headers={"ETag": f'"{blob.data["etag"]}"',
                                              "Last-Modified": http_date(blob.data["modified"]),
                                              "x-ms-request-server-encrypted": "true"})


async def set_metadata(store: BlobStore, request: Request, container: Resource, name: str) -> Response:
    meta = req.metadata(request)

    def change(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "meta": meta}

    return _answer(await store.set_properties(container, name, change, req.conditions(request)))


async def set_properties(store: BlobStore, request: Request, container: Resource, name: str) -> Response:
    for header in _UNSUPPORTED:  # page-blob properties: chunkd has block blobs only
        if header in request.headers:
            raise BlobError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct "
                            "format.", HeaderName=header, Reason="chunkd supports block blobs only")
    md5 = request.headers.get("x-ms-blob-content-md5", "")
    if md5:
        wire.decode_b64_header(md5, "x-ms-blob-content-md5", 16)
    fields = req.props(request, put_blob=False).as_data()

    def change(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, **{k: fields[k] for k in _CONTENT_FIELDS}}

    return _answer(await store.set_properties(container, name, change, req.conditions(request)))
