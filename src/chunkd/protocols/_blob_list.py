"""List Blobs (``GET /{c}?restype=container&comp=list``): ``prefix``, ``delimiter`` (folders as
``<BlobPrefix>``), ``marker`` / ``NextMarker`` paging, ``maxresults`` (1..5000), ``include=metadata,
uncommittedblobs``; names sorted by UTF-8 bytes, as Azure sorts."""

from __future__ import annotations

from xml.sax.saxutils import escape

from starlette.responses import Response

from chunkd.protocols import _blob_wire as wire
from chunkd.protocols._blob_wire import BlobError
from chunkd.protocols._parse import parse_uint
from chunkd.services.blob_model import Blob, Container
from chunkd.services.blobs import BlobServices

MAX_RESULTS = 5000


def _max_results(raw: str) -> int:
    limit = parse_uint(raw, 999_999_999)  # up to 9 digits: larger is malformed, 5001..999999999 out of range
    if limit is None:
        raise BlobError(400, "InvalidQueryParameterValue", "Value for one of the query parameters specified in the "
                        "request URI is invalid.", QueryParameterName="maxresults", QueryParameterValue=raw[:64])
    if not 1 <= limit <= MAX_RESULTS:
        raise BlobError(400, "OutOfRangeQueryParameterValue", "One of the query parameters specified in the request "
                        "URI is outside the permissible range.", QueryParameterName="maxresults",
                        QueryParameterValue=raw, MinimumAllowed="1", MaximumAllowed=str(MAX_RESULTS))
    return limit


async def list_blobs(services: BlobServices, container: Container, query: dict[str, str], endpoint: str) -> Response:
    """The EnumerationResults document; ``endpoint`` is the account URL the client used (ServiceEndpoint)."""
    prefix, delimiter, marker = query.get("prefix", ""), query.get("delimiter", ""), query.get("marker", "")
    limit = _max_results(query.get("maxresults", str(MAX_RESULTS)))
    include = {i.strip().lower() for i in query.get("include", "").split(",") if i.strip()}
    entries: dict[str, Blob | None] = {b.name: b for b in await services.containers.blobs(container.id)}
    if "uncommittedblobs" in include:
        for n in await services.blocks.uncommitted_names(container.id):
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
    parts = [wire.XML_DECL, f'<EnumerationResults ServiceEndpoint="{escape(endpoint)}" '
             f'ContainerName="{escape(container.id)}">',
             f"<Prefix>{escape(prefix)}</Prefix>" if prefix else "<Prefix />",
             f"<Marker>{escape(marker)}</Marker>" if marker else "<Marker />",
             f"<MaxResults>{limit}</MaxResults>",
             f"<Delimiter>{escape(delimiter)}</Delimiter>" if delimiter else "",
             "<Blobs>", *items, "</Blobs>",
             f"<NextMarker>{escape(next_marker)}</NextMarker>" if next_marker else "<NextMarker />",
             "</EnumerationResults>"]
    return Response("".join(parts), media_type="application/xml")
