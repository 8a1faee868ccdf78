"""The records of Universal Print: a printer (:class:`Printer`), a print job (:class:`Job`) and a job's
document (:class:`Document`), each an engine resource converted there and back only by its class; what a
document's upload session keeps beside the core session (:class:`UploadFields`, in ``Session.extra``); and
print's refusals (:class:`PrintFault` with a :class:`PrintFaultCode`; no HTTP status). Used by
:mod:`chunkd.services.printers`, :mod:`chunkd.services.print_jobs` and :mod:`chunkd.services.print_documents`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chunkd.core.principal import Principal
from chunkd.core.resources import Resource
from chunkd.services.envelope import Stored

__all__ = ["DEFAULT_CONTENT_TYPES", "FAMILY", "KIND_DOCUMENT", "KIND_JOB", "KIND_PRINTER", "NAMESPACE", "Document",
           "Job", "PrintFault", "PrintFaultCode", "Printer", "UploadFields", "principal_data"]

NAMESPACE = "print"  # the published documents' object namespace
FAMILY = "graph-print"  # the family of the documents' upload sessions
KIND_PRINTER = "print.printer"
KIND_JOB = "print.job"
KIND_DOCUMENT = "print.document"
DEFAULT_CONTENT_TYPES = ("application/oxps", "application/pdf", "image/jpeg", "image/png", "image/pwg-raster",
                         "image/urf", "text/plain")


class PrintFaultCode(enum.StrEnum):
    """Print's own refusals; the front end gives each its status and error code."""

    NOT_FOUND = "notFound"  # no such printer, job or document for the caller (or no uploaded bytes yet)
    SESSION_NOT_FOUND = "uploadSessionNotFound"  # no live upload session (none, ended or past its deadline)
    NOT_OWNER = "notOwner"  # another principal's job without tenant-wide rights, or its session to delete
    JOB_STARTED = "jobStarted"  # a started job takes no more uploads
    DOCUMENT_UPLOADED = "documentUploaded"  # the document's bytes are all there already
    SESSION_IN_PROGRESS = "uploadSessionInProgress"  # another principal's session, or one with other properties
    SESSION_ENDED = "sessionEnded"  # a completed upload cannot be cancelled
    INCOMPLETE = "uploadSessionIncomplete"  # a job starts only once every document is uploaded


class PrintFault(Exception):
    """A refusal by print's rules: a :class:`PrintFaultCode` and a message, no HTTP status."""

    def __init__(self, code: PrintFaultCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def principal_data(principal: Principal) -> dict[str, str]:
    """How a principal is kept in a job's ``createdBy`` and a session's ``principal``."""
    return {"kind": principal.kind, "tenant": principal.tenant, "user": principal.user, "app": principal.app}


@dataclass(frozen=True)
class Printer:
    """A registered printer and the document types it accepts (lower-case MIME types)."""

    id: str
    display_name: str
    content_types: tuple[str, ...] = DEFAULT_CONTENT_TYPES
    stored: Stored = field(default_factory=Stored)

    @property
    def tenant(self) -> str:
        return self.stored.tenant

    @classmethod
    def from_resource(cls, res: Resource) -> Printer:
        types = res.data.get("contentTypes") or DEFAULT_CONTENT_TYPES
        return cls(id=res.id, display_name=str(res.data.get("displayName", "")),
                   content_types=tuple(str(t) for t in types), stored=Stored.of(res))

    def to_resource(self) -> Resource:
        data = {"displayName": self.display_name, "contentTypes": list(self.content_types)}
        return self.stored.resource(KIND_PRINTER, self.id, data)


@dataclass(frozen=True)
class Job:
    """A print job of a printer. ``created_by`` is the creator as :func:`principal_data` keeps it; a job is
    started once, after every document is uploaded (nothing is printed: it is then complete)."""

    id: str
    printer_id: str
    configuration: Mapping[str, Any] = field(default_factory=dict)
    created_by: Mapping[str, str] = field(default_factory=dict)
    started: bool = False
    stored: Stored = field(default_factory=Stored)

    @property
    def tenant(self) -> str:
        return self.stored.tenant

    @property
    def owner(self) -> str:
        """The key of the principal that created the job."""
        return self.stored.creator

    @classmethod
    def from_resource(cls, res: Resource) -> Job:
        d = res.data
        return cls(id=res.id, printer_id=res.parent, configuration=dict(d.get("configuration") or {}),
                   created_by={str(k): str(v) for k, v in (d.get("createdBy") or {}).items()},
                   started=bool(d.get("started")), stored=Stored.of(res))

    def to_resource(self) -> Resource:
        data = {"configuration": dict(self.configuration), "createdBy": dict(self.created_by),
                "started": self.started}
        return self.stored.resource(KIND_JOB, self.id, data, parent=self.printer_id)


@dataclass(frozen=True)
class Document:
    """A job's document. ``session_id`` names its current upload session (None: none); once ``uploaded`` its
    bytes are object ``object_key`` of :data:`NAMESPACE` and name, type and size are the upload's."""

    id: str
    job_id: str
    display_name: str = ""
    content_type: str = ""
    size: int = 0
    uploaded: bool = False
    session_id: str | None = None
    uploaded_at: float | None = None
    object_key: str | None = None
    stored: Stored = field(default_factory=Stored)

    @classmethod
    def from_resource(cls, res: Resource) -> Document:
        d = res.data
        sid, at, key = d.get("sessionId"), d.get("uploadedAt"), d.get("objectKey")
        return cls(id=res.id, job_id=res.parent, display_name=str(d.get("displayName") or ""),
                   content_type=str(d.get("contentType") or ""), size=int(d.get("size") or 0),
                   uploaded=bool(d.get("uploaded")), session_id=str(sid) if sid else None,
                   uploaded_at=float(at) if at else None, object_key=str(key) if key else None,
                   stored=Stored.of(res))

    def to_resource(self) -> Resource:
        data: dict[str, Any] = {"displayName": self.display_name, "contentType": self.content_type,
                                "size": self.size, "uploaded": self.uploaded, "sessionId": self.session_id}
        if self.uploaded:
            data.update(uploadedAt=self.uploaded_at, objectKey=self.object_key)
        return self.stored.resource(KIND_DOCUMENT, self.id, data, parent=self.job_id)


@dataclass(frozen=True)
class UploadFields:
    """What print keeps beside a document's upload session: its deadline (``expirationDateTime``, engine
    clock seconds), the document, job and printer it fills, and the principal that opened it (uploadUrl
    requests carry no token of their own, so commits and deletes act as this one)."""

    deadline: float
    document: str
    job: str = ""
    printer: str = ""
    principal: Mapping[str, str] = field(default_factory=dict)

    def to_extra(self) -> dict[str, Any]:
        return {"deadline": self.deadline, "document": self.document, "job": self.job, "printer": self.printer,
                "principal": dict(self.principal)}

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> UploadFields:
        p = extra.get("principal") or {}
        return cls(deadline=float(extra.get("deadline", 0)), document=str(extra.get("document", "")),
                   job=str(extra.get("job", "")), printer=str(extra.get("printer", "")),
                   principal={str(k): str(v) for k, v in p.items()})

    @property
    def owner(self) -> Principal:
        p = self.principal
        return Principal(kind=p.get("kind", "anonymous"), tenant=p.get("tenant", ""), user=p.get("user", ""),
                         app=p.get("app", ""))
