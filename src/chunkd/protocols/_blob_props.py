"""Set Blob Metadata (``PUT ?comp=metadata``) and Set Blob Properties (``PUT ?comp=properties``): change a
committed blob's metadata or content headers without touching its bytes.

As on Azure: Set Blob Metadata replaces all metadata with the request's ``x-ms-meta-*`` headers (none = clear
it); Set Blob Properties sets all six content headers at once from ``x-ms-blob-content-type``, ``-encoding``,
``-language``, ``-disposition``, ``-md5`` and ``x-ms-blob-cache-control`` -- one left out is cleared (the
blob's Content-MD5 too). Both need SAS permission ``w``, honour ``If-Match`` / ``If-None-Match``, give the
blob a new ETag and Last-Modified, answer 200, and 404 ``BlobNotFound`` for a blob with only staged blocks.
"""

from __future__ import annotations

from dataclasses import replace

from starlette.requests import Request
from starlette.responses import Response

from chunkd.protocols import _blob_request as req
from chunkd.protocols import _blob_wire as wire
from chunkd.protocols._blob_wire import BlobError
from chunkd.services.blob_model import BlobProps, Container
from chunkd.services.blobs import BlobService

_UNSUPPORTED = ("x-ms-blob-content-length", "x-ms-sequence-number-action", "x-ms-blob-sequence-number")


async def set_metadata(blobs: BlobService, request: Request, container: Container, name: str) -> Response:
    meta = req.metadata(request)

    def change(props: BlobProps) -> BlobProps:
        return replace(props, meta=meta)

    blob = await blobs.set_properties(container, name, change, req.conditions(request))
    return Response(status_code=200, headers=wire.write_headers(blob))


async def set_properties(blobs: BlobService, request: Request, container: Container, name: str) -> Response:
    for header in _UNSUPPORTED:  # page-blob properties: chunkd has block blobs only
        if header in request.headers:
            raise BlobError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct "
                            "format.", HeaderName=header, Reason="chunkd supports block blobs only")
    md5 = request.headers.get("x-ms-blob-content-md5", "")
    if md5:
        wire.decode_b64_header(md5, "x-ms-blob-content-md5", 16)
    headers = req.props(request, put_blob=False)

    def change(props: BlobProps) -> BlobProps:  # every content header from the request; metadata stays
        return replace(headers, meta=props.meta)

    blob = await blobs.set_properties(container, name, change, req.conditions(request))
    return Response(status_code=200, headers=wire.write_headers(blob))
