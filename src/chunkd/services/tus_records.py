"""The records of tus uploads: what tus keeps beside a session (:class:`UploadFields`, stored in
``Session.extra`` and converted there and back only by that class), an upload as tus reports it
(:class:`Upload`), what a creation asks for (:class:`NewUpload`), the link of a final upload to an
unfinished part (:class:`PendingFinal`, a resource converted only by that class), and tus's refusals
(:class:`TusFault` with a :class:`FaultCode`; no HTTP status). Used by :mod:`chunkd.services.tus_uploads`.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chunkd.core.models import Session, SessionState
from chunkd.core.resources import Resource

__all__ = ["FAMILY", "NAMESPACE", "PENDING_FINAL", "Concat", "FaultCode", "NewUpload", "PendingFinal", "TusFault",
           "Upload", "UploadFields"]

NAMESPACE = "tus"
FAMILY = "tus"
PENDING_FINAL = "tus.pending-final"  # resource kind of PendingFinal


class FaultCode(enum.StrEnum):
    """tus's own refusals, by tusd's codes."""

    INVALID_CONCAT = "ERR_INVALID_CONCAT"
    MAX_SIZE_EXCEEDED = "ERR_MAX_SIZE_EXCEEDED"  # beyond the server's Tus-Max-Size
    UPLOAD_SIZE_EXCEEDED = "ERR_UPLOAD_SIZE_EXCEEDED"  # beyond the upload's own length
    MODIFY_FINAL = "ERR_MODIFY_FINAL"
    NOT_FINISHED = "ERR_UPLOAD_NOT_FINISHED"


class TusFault(Exception):
    """A refusal by tus's rules: a :class:`FaultCode` and a message, no HTTP status."""

    def __init__(self, code: FaultCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class Concat(enum.StrEnum):
    NONE = ""
    PARTIAL = "partial"
    FINAL = "final"


@dataclass(frozen=True)
class UploadFields:
    """What tus keeps beside a session. ``metadata`` is the ``Upload-Metadata`` pairs as sent (values in
    base64, echoed verbatim by HEAD); ``parts`` the upload ids a final concatenates, in order."""

    concat: Concat = Concat.NONE
    parts: tuple[str, ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()
    # the IETF draft's Upload-Length, announced before the client marks the upload complete: the session's own
    # length stays unset until then, because reaching it must not complete the upload (only Upload-Complete does)
    declared_length: int | None = None
    # the IETF draft's Repr-Digest: (chunkd checksum algorithm, base64 digest) pairs the client announced for the
    # whole upload, checked by the engine when the upload is committed (chunkd.core.digests)
    repr_digest: tuple[tuple[str, str], ...] = ()

    @property
    def expected_digests(self) -> dict[str, bytes]:
        return {name: base64.b64decode(value) for name, value in self.repr_digest}

    def to_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"meta": [list(p) for p in self.metadata]}
        if self.concat:
            extra["concat"] = self.concat.value
        if self.parts:
            extra["parts"] = list(self.parts)
        if self.declared_length is not None:
            extra["declared_length"] = self.declared_length
        if self.repr_digest:
            extra["repr_digest"] = dict(self.repr_digest)
        return extra

    @staticmethod
    def concat_of(extra: Mapping[str, Any]) -> Concat:
        """``from_extra(extra).concat`` without decoding the rest (every append checks it: ≈ 0.4 against 3 µs)."""
        return Concat(extra.get("concat", ""))

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> UploadFields:
        declared = extra.get("declared_length")
        return cls(concat=cls.concat_of(extra), parts=tuple(str(p) for p in extra.get("parts", ())),
                   metadata=tuple((str(k), str(v)) for k, v in extra.get("meta", ())),
                   declared_length=None if declared is None else int(declared),
                   repr_digest=tuple(sorted((str(k), str(v)) for k, v in extra.get("repr_digest", {}).items())))


@dataclass(frozen=True)
class Upload:
    """An upload as tus reports it: the session and its tus fields."""

    session: Session
    fields: UploadFields

    @classmethod
    def of(cls, session: Session) -> Upload:
        return cls(session, UploadFields.from_extra(session.extra))

    @property
    def id(self) -> str:
        return self.session.id

    @property
    def finished(self) -> bool:
        """Published: a GET serves it."""
        return self.session.state is SessionState.COMMITTED

    @property
    def offset_known(self) -> bool:
        """False for a final whose parts are not all complete: it has no offset to report yet."""
        return self.fields.concat is not Concat.FINAL or self.finished


@dataclass(frozen=True)
class NewUpload:
    """What a creation asks for. ``length`` None is a deferred length (for a final: the sum of its
    parts, computed here). ``text`` is the metadata values that decode to text (the session's metadata:
    ``filename``/``name`` and ``filetype``/``type`` name the download)."""

    length: int | None
    concat: Concat = Concat.NONE
    parts: tuple[str, ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()
    text: Mapping[str, str] = field(default_factory=dict)
    declared_length: int | None = None  # see UploadFields.declared_length
    repr_digest: tuple[tuple[str, str], ...] = ()  # see UploadFields.repr_digest


@dataclass(frozen=True)
class PendingFinal:
    """A final upload waiting for one of its parts to complete (a resource whose parent is the part)."""

    final: str
    part: str

    @property
    def resource_id(self) -> str:
        return f"{self.final}.{self.part}"

    def to_data(self) -> dict[str, Any]:
        return {"final": self.final}

    @classmethod
    def from_resource(cls, resource: Resource) -> PendingFinal:
        return cls(final=str(resource.data["final"]), part=resource.parent)
