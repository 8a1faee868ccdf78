"""Wire shapes of Microsoft Graph Universal Print: JSON of printers, jobs, documents and upload sessions,
and the parsing of request fields (upload properties, ``Content-Range``, ``If-Match``).

Pure functions over print records and sessions: no engine calls, no HTTP objects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from chunkd.core.models import Session
from chunkd.core.ranges import Range
from chunkd.protocols._graph import GraphError
from chunkd.protocols._http import iso_date
from chunkd.protocols._parse import INT64_MAX, parse_uint
from chunkd.services.print_records import Document, Job, Printer, UploadFields

_CONTENT_RANGE = re.compile(r"bytes(?:\s+|\s*=\s*)([0-9]{1,19})\s*-\s*([0-9]{1,19})\s*/\s*([0-9]{1,19}|\*)", re.I)


def _date(ts: float | None) -> str | None:
    return iso_date(ts) if ts else None


# -- resources --------------------------------------------------------------------------------------
def printer_json(printer: Printer) -> dict[str, Any]:
    types = list(printer.content_types)
    return {
        "id": printer.id, "displayName": printer.display_name, "manufacturer": "chunkd",
        "model": "chunkd virtual printer", "isShared": True, "isAcceptingJobs": True,
        "registeredDateTime": _date(printer.stored.created_at),
        "status": {"state": "idle", "details": [], "description": ""},
        "capabilities": {"contentTypes": types},
        "defaults": {"contentType": types[0] if types else None},
    }


def share_json(printer: Printer) -> dict[str, Any]:
    """A printer seen through ``print/shares``: chunkd shares every printer under its own id."""
    out = printer_json(printer)
    out["createdDateTime"] = out.pop("registeredDateTime")
    return out


def created_by(principal_data: Mapping[str, str]) -> dict[str, Any]:
    """identitySet of the seeds' ``createdBy``: application and user ids from the token."""
    out: dict[str, Any] = {}
    if principal_data.get("app"):
        out["application"] = {"id": principal_data["app"]}
    if principal_data.get("user"):
        out["user"] = {"id": principal_data["user"]}
    return out


def job_status(job: Job) -> dict[str, Any]:
    if job.started:
        # Nothing is printed: chunkd keeps the documents, so the job is finished once started.
        return {"state": "completed", "description": "chunkd keeps the documents; nothing is printed.",
                "isAcquiredByPrinter": False, "details": ["completedSuccessfully"]}
    return {"state": "paused", "description": "The job is waiting for its document to be uploaded and started.",
            "isAcquiredByPrinter": False, "details": ["uploadPending"]}


def job_json(job: Job, documents: list[Document]) -> dict[str, Any]:
    who = job.created_by
    return {
        "id": job.id, "createdDateTime": _date(job.stored.created_at),
        "createdBy": {"id": who.get("user") or who.get("app") or "", "displayName": who.get("user") or who.get("app"),
                      "userPrincipalName": None},
        "isFetchable": False, "redirectedFrom": None, "redirectedTo": None,
        "configuration": dict(job.configuration),
        "status": job_status(job),
        "documents": [document_json(doc) for doc in documents],
    }


def document_json(doc: Document) -> dict[str, Any]:
    return {
        "id": doc.id, "displayName": doc.display_name, "documentName": doc.display_name,
        "contentType": doc.content_type, "size": doc.size,
        "uploadedDateTime": _date(doc.uploaded_at), "downloadedDateTime": None,
    }


# -- upload sessions --------------------------------------------------------------------------------
def closed_ranges(missing: list[Range]) -> list[str]:
    """Current form: ``["0-1023"]``, inclusive ends."""
    return [f"{s}-{e - 1}" for s, e in missing]


def integer_ranges(missing: list[Range]) -> list[dict[str, int]]:
    """Seeds' form: integerRange objects ``{"start": 0, "end": 1023}``, inclusive ends."""
    return [{"start": s, "end": e - 1} for s, e in missing]


def print_upload_session_json(session: Session, missing: list[Range]) -> dict[str, Any]:
    """The seeds' printUploadSession; both names of the expiry and of the range list are sent."""
    fields = UploadFields.from_extra(session.extra)
    expires = iso_date(fields.deadline)
    ranges = integer_ranges(missing)
    return {
        "id": session.id, "size": session.length, "contentType": session.content_type,
        "documentName": session.name, "expiryDateTime": expires, "expirationDateTime": expires,
        "createdBy": created_by(fields.principal),
        "nextExpectedRanges": ranges, "missingRanges": ranges,
    }


def upload_session_json(session: Session, missing: list[Range], upload_url: str | None) -> dict[str, Any]:
    """The current form's uploadSession."""
    out: dict[str, Any] = {"expirationDateTime": iso_date(UploadFields.from_extra(session.extra).deadline),
                           "nextExpectedRanges": closed_ranges(missing)}
    if upload_url is not None:
        out = {"uploadUrl": upload_url, **out}
    return out


def etag(session: Session) -> str:
    """The seeds' form's ETag: stable for the session's life, so parallel segment writers holding the same
    value never invalidate each other (a per-write ETag would make If-Match useless with 4 writers)."""
    return f'"{session.id}"'


def check_if_match(header: str | None, session: Session) -> None:
    """If-Match, when sent, must name this session: ``*``, the ETag, ``W/`` + ETag or the bare id."""
    if header is None:
        return
    for item in header.split(","):
        tag = item.strip()
        if tag == "*":
            return
        tag = tag.removeprefix("W/").strip().strip('"')
        if tag == session.id:
            return
    raise GraphError(412, "resourceModified", "If-Match does not match the upload session's ETag")


def upload_properties(body: dict[str, Any], content_types: Sequence[str], max_size: int) -> tuple[int, str, str]:
    """(size, contentType, documentName) from createUploadSession ``properties`` or the seeds' PUT body."""
    size = body.get("size")
    if size is None:
        raise GraphError(400, "invalidRequest", "size is required")
    if isinstance(size, str):  # Int64 may arrive as a string (OData IEEE754Compatible); ASCII digits only
        size = parse_uint(size.strip(), INT64_MAX)
    if not isinstance(size, int) or isinstance(size, bool):
        raise GraphError(400, "invalidRequest", "size must be an integer")
    if size < 0:
        raise GraphError(400, "invalidRequest", "size must not be negative")
    if size > max_size:
        raise GraphError(400, "invalidRequest", f"size exceeds the maximum of {max_size} bytes", "maxFileSizeExceeded")
    content_type = body.get("contentType")
    if not isinstance(content_type, str) or not content_type.strip():
        raise GraphError(400, "invalidRequest", "contentType is required")
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in {t.lower() for t in content_types}:
        raise GraphError(400, "invalidRequest", f"the printer does not support content type {content_type!r} "
                                                f"(supported: {', '.join(content_types)})")
    name = body.get("documentName", "")
    if name is None:
        name = ""
    if not isinstance(name, str):
        raise GraphError(400, "invalidRequest", "documentName must be a string")
    return size, media, name


def parse_content_range(header: str | None, declared_length: str | None, size: int) -> tuple[int, int]:
    """``bytes S-E/T`` or ``bytes=S-E/T`` (inclusive) -> half-open ``(start, end)`` within ``size``."""
    start, end, total = parse_segment_range(header, declared_length)
    check_segment_fits(start, end, total, size)
    return start, end


def parse_segment_range(header: str | None, declared_length: str | None) -> tuple[int, int, int]:
    """``bytes S-E/T`` or ``bytes=S-E/T`` (inclusive) -> half-open ``(start, end)`` and the total ``T``,
    checked against nothing but itself and ``Content-Length``."""
    if not header:
        raise GraphError(400, "invalidRequest", "the Content-Range header is required")
    m = _CONTENT_RANGE.fullmatch(header.strip())
    if not m:
        raise GraphError(400, "invalidRequest", f"malformed Content-Range {header!r}; expected 'bytes S-E/T'")
    start, last = int(m.group(1)), int(m.group(2))
    if m.group(3) == "*":
        raise GraphError(400, "invalidRequest", "the total in Content-Range must be the document size")
    if start > last:
        raise GraphError(400, "invalidRequest", "Content-Range start is after its end")
    if declared_length is not None and parse_uint(declared_length.strip()) != last - start + 1:
        raise GraphError(400, "invalidRequest", f"Content-Length {declared_length[:40]} differs from the "
                                                f"{last - start + 1} bytes of Content-Range", "fragmentLengthMismatch")
    return start, last + 1, int(m.group(3))


def check_segment_fits(start: int, end: int, total: int, size: int) -> None:
    """A segment's total must be the document size, and its range inside it."""
    if total != size:
        raise GraphError(400, "invalidRequest", f"Content-Range total {total} differs from the document size {size}",
                         "fragmentLengthMismatch")
    if end > size:
        raise GraphError(416, "invalidRange", f"Content-Range ends at {end - 1}, beyond the last byte {size - 1}",
                         "invalidStartIndex" if start >= size else None)


def deadline(session: Session) -> float:
    """When a document's upload session ends (its ``expirationDateTime``)."""
    return UploadFields.from_extra(session.extra).deadline
