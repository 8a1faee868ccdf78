"""Wire format of the IETF draft "Resumable Uploads for HTTP", interop versions 3 to 8: what each version
names and requires (:class:`Version`, one row of :data:`VERSIONS` per interop version), Structured Field
parsing of the draft's headers, ``Upload-Limit``, the digest fields, and error answers.

Every client-visible error is a :class:`DraftError`, answered by :func:`error_response`: from interop 6 on, the
draft's problem types as ``application/problem+json`` (RFC 9457); before, plain text. Pure functions over
header values; :mod:`chunkd.protocols.ietf_resumable` uses them. See docs/ietf-resumable.md.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.responses import Response

from chunkd.core import errors
from chunkd.core.body import ClientGone
from chunkd.core.checksum import ChecksumIncomplete, UnsupportedAlgorithm
from chunkd.core.digests import DigestMismatch
from chunkd.protocols._errors import lookup, retry_after
from chunkd.services.ietf_uploads import DraftCode, DraftFault, Limits

INTEROP_HEADER = "Upload-Draft-Interop-Version"
PARTIAL_UPLOAD = "application/partial-upload"
PROBLEM_BASE = "https://iana.org/assignments/http-problem-types#"
# problem types of chunkd's own, for refusals the draft names no type for (docs/ietf-resumable.md): a tag URI
# (RFC 4151), an identifier that resolves nowhere, as RFC 9457 allows
CHUNKD_PROBLEM_BASE = "tag:chunkd,2026:problem:"
CHUNKD_PROBLEMS = frozenset({"repr-digest-mismatch", "conflicting-repr-digest"})


@dataclass(frozen=True)
class Version:
    """What one interop version of the draft defines (the drafts' own text; see docs/ietf-resumable.md)."""

    interop: int
    drafts: str
    complete_field: str  # "Upload-Incomplete" (3: true = incomplete) or "Upload-Complete" (4+)
    partial_upload: bool  # appends must be Content-Type: application/partial-upload (6+)
    length_field: bool  # Upload-Length is defined (6+)
    limits: bool  # Upload-Limit is defined, in responses and on OPTIONS (6+)
    age_key: str  # the lifetime limit's key: "expires" (6), "max-age" (7+)
    problems: frozenset[str]  # problem types the version defines
    complete_required: bool  # an append must carry Upload-Complete (7+; before, absent means complete)
    append_status: int  # success of an append that does not complete the upload
    accept_patch: bool  # OPTIONS names application/partial-upload in Accept-Patch (8)
    digests: bool  # Content-Digest / Repr-Digest (RFC 9530) are part of the draft (6+)

    def flag(self, complete: bool) -> str:
        """The completeness field's value: ``?1``/``?0`` (inverted for interop 3's Upload-Incomplete)."""
        return "?1" if complete != (self.interop == 3) else "?0"


_P6 = frozenset({"mismatching-upload-offset", "completed-upload"})
_P7 = _P6 | {"inconsistent-upload-length"}
VERSIONS: dict[int, Version] = {v.interop: v for v in (
    Version(3, "-01", "Upload-Incomplete", False, False, False, "", frozenset(), False, 201, False, False),
    Version(4, "-02", "Upload-Complete", False, False, False, "", frozenset(), False, 201, False, False),
    Version(5, "-03", "Upload-Complete", False, False, False, "", frozenset(), False, 201, False, False),
    Version(6, "-04, -05", "Upload-Complete", True, True, True, "expires", _P6, False, 201, False, True),
    Version(7, "-06 to -08", "Upload-Complete", True, True, True, "max-age", _P7, True, 204, False, True),
    Version(8, "-09 to -11", "Upload-Complete", True, True, True, "max-age", _P7, True, 204, True, True),
)}


class DraftError(Exception):
    """An error answer: status, title, the problem type (a key of :attr:`Version.problems`, or "") and its
    extension members, plus headers (a 409's Upload-Offset)."""

    def __init__(self, status: int, title: str, problem: str = "", headers: dict[str, str] | None = None,
                 members: dict[str, object] | None = None) -> None:
        super().__init__(title)
        self.status, self.title, self.problem = status, title, problem
        self.headers = headers or {}
        self.members = members or {}


def error_response(exc: DraftError, version: Version | None) -> Response:
    headers = dict(exc.headers)
    if version is not None:
        headers[INTEROP_HEADER] = str(version.interop)
    base = ""
    if version is not None and exc.problem in version.problems:
        base = PROBLEM_BASE
    elif version is not None and exc.problem in CHUNKD_PROBLEMS and version.problems:
        base = CHUNKD_PROBLEM_BASE  # only in versions that answer with problem details at all
    if base:
        body = {"type": base + exc.problem, "title": exc.title, **exc.members}
        return Response(json.dumps(body), status_code=exc.status, headers=headers,
                        media_type="application/problem+json")
    return Response(exc.title + "\n", status_code=exc.status, headers=headers, media_type="text/plain")


# core error -> status, looked up along the exception's MRO, most specific first
CORE_ERRORS: dict[type[errors.ChunkdError], int] = {
    DigestMismatch: 400,
    errors.ChecksumMismatch: 400,
    UnsupportedAlgorithm: 400,
    ChecksumIncomplete: 400,
    errors.LengthMismatch: 400,
    errors.InvalidRange: 400,
    errors.InvalidInput: 400,
    errors.TooLarge: 413,
    errors.SessionNotFound: 404,
    errors.ObjectNotFound: 404,
    errors.PermissionDenied: 404,  # never reveal that another principal's upload exists
    errors.SessionGone: 404,  # the draft: an upload that is no longer active is 404
    errors.OffsetMismatch: 409,
    errors.RangeBusy: 423,
    errors.WriteInterrupted: 400,
    errors.Conflict: 423,
    errors.NotFound: 404,
    ClientGone: 400,
    errors.PiecesMissing: 503,
    errors.StorageFull: 507,
    errors.StorageUnavailable: 503,
}


def map_core_error(exc: errors.ChunkdError, provided: int | None = None) -> DraftError:
    status = lookup(CORE_ERRORS, exc)
    if status is None:
        return DraftError(500, "internal error")
    headers = retry_after(status, exc)
    if isinstance(exc, errors.OffsetMismatch):
        members: dict[str, object] = {"expected-offset": exc.offset}
        if provided is not None:
            members["provided-offset"] = provided
        return DraftError(409, "offset from request does not match offset of resource", "mismatching-upload-offset",
                          {"Upload-Offset": str(exc.offset), **headers}, members)
    if isinstance(exc, errors.LengthMismatch):
        return DraftError(400, exc.message, "inconsistent-upload-length", headers)
    if isinstance(exc, DigestMismatch):
        return DraftError(400, exc.message, "repr-digest-mismatch", headers)
    return DraftError(status, exc.message, "", headers)


def map_fault(exc: DraftFault, version: Version, empty: bool) -> DraftError:
    if exc.code is DraftCode.COMPLETED:
        # interop 8 (-11): appending bytes to a completed upload is an inconsistent length
        if version.interop >= 8 and not empty:
            return DraftError(400, "the upload is already complete; its length cannot grow",
                              "inconsistent-upload-length")
        return DraftError(400, "upload is already completed", "completed-upload")
    if exc.code is DraftCode.INCONSISTENT_LENGTH:
        return DraftError(400, exc.message, "inconsistent-upload-length")
    if exc.code is DraftCode.APPEND_TOO_LARGE:
        return DraftError(413, exc.message)
    if exc.code is DraftCode.CONFLICTING_DIGEST:
        return DraftError(400, exc.message, "conflicting-repr-digest")
    return DraftError(400, exc.message)


_SF_INTEGER = re.compile(r"-?[0-9]{1,15}")  # RFC 9651 sf-integer


def sf_integer(value: str | None, name: str) -> int | None:
    """A non-negative sf-integer header (parameters ignored), None when absent; 400 when malformed."""
    if value is None:
        return None
    item = value.split(";", 1)[0].strip()
    if not _SF_INTEGER.fullmatch(item) or item.startswith("-"):
        raise DraftError(400, f"{name} must be a non-negative Structured Field Integer, not {value[:40]!r}")
    return int(item)


def sf_boolean(value: str | None, name: str) -> bool | None:
    """An sf-boolean header (``?1`` / ``?0``, parameters ignored), None when absent; 400 when malformed."""
    if value is None:
        return None
    item = value.split(";", 1)[0].strip()
    if item not in ("?0", "?1"):
        raise DraftError(400, f"{name} must be a Structured Field Boolean (?0 or ?1), not {value[:40]!r}")
    return item == "?1"


def completeness(version: Version, headers: Mapping[str, str], *, required: bool) -> bool | None:
    """The request's completeness: Upload-Complete, or the inverse of interop 3's Upload-Incomplete. None when
    absent and not ``required``."""
    flag = sf_boolean(headers.get(version.complete_field.lower()), version.complete_field)
    if flag is None:
        if required:
            raise DraftError(400, f"{version.complete_field} is required")
        return None
    return (not flag) if version.interop == 3 else flag


def upload_limit(version: Version, limits: Limits, max_age: float | None) -> str:
    """The ``Upload-Limit`` dictionary: the limits chunkd applies (never empty: ``max-size`` always is)."""
    items = [f"max-size={limits.max_size}"]
    if limits.min_size:
        items.append(f"min-size={limits.min_size}")
    if limits.max_append_size is not None:
        items.append(f"max-append-size={limits.max_append_size}")
    if limits.min_append_size:
        items.append(f"min-append-size={limits.min_append_size}")
    if max_age is not None:
        items.append(f"{version.age_key}={max(0, int(max_age))}")
    return ", ".join(items)


# RFC 9530 algorithm names -> chunkd's checksum algorithms
DIGEST_ALGORITHMS = {"sha-256": "sha256", "sha-512": "sha512", "md5": "md5", "sha": "sha1"}
_DIGEST_MEMBER = re.compile(r"\s*([a-z][a-z0-9_.*-]*)\s*=\s*:([A-Za-z0-9+/=]*):\s*(;.*)?")


def parse_digest(value: str | None, name: str) -> tuple[str, bytes] | None:
    """The strongest supported member of a ``Content-Digest`` / ``Repr-Digest`` dictionary (RFC 9530) as
    ``(chunkd algorithm, digest)``; None when absent. 400 when malformed or no algorithm is supported."""
    found = parse_digests(value, name)
    for algorithm in ("sha512", "sha256", "md5", "sha1"):
        if algorithm in found:
            return algorithm, found[algorithm]
    return None


def parse_digests(value: str | None, name: str) -> dict[str, bytes]:
    """Every supported member of a ``Content-Digest`` / ``Repr-Digest`` dictionary (RFC 9530), by chunkd
    algorithm; empty when absent. 400 when malformed or when no algorithm is supported (unsupported members
    beside a supported one are ignored, as RFC 9530 allows; a repeated key keeps its last value, as RFC 9651)."""
    if value is None:
        return {}
    found: dict[str, bytes] = {}
    for member in value.split(","):
        m = _DIGEST_MEMBER.fullmatch(member)
        if not m:
            raise DraftError(400, f"{name} is not a dictionary of byte sequences: {value[:80]!r}")
        try:
            found[m.group(1)] = base64.b64decode(m.group(2), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise DraftError(400, f"{name} holds a malformed byte sequence") from exc
    supported = {DIGEST_ALGORITHMS[k]: v for k, v in found.items() if k in DIGEST_ALGORITHMS}
    if not supported:
        raise DraftError(400, f"{name} names no supported algorithm; supported: {', '.join(DIGEST_ALGORITHMS)}")
    return supported


_WANT_MEMBER = re.compile(r"\s*([a-z][a-z0-9_.*-]*)\s*=\s*([0-9]{1,2})\s*(;.*)?")


def wanted_digest(value: str | None) -> str | None:
    """The chunkd algorithm a ``Want-Repr-Digest`` prefers (RFC 9530: weights 1 to 10, 0 = not acceptable) among
    sha-256 and sha-512; None when absent, malformed (a preference, so it is ignored) or naming neither."""
    best: tuple[int, str] | None = None
    for member in (value or "").split(","):
        m = _WANT_MEMBER.fullmatch(member)
        if not m:
            return None
        weight, name = int(m.group(2)), m.group(1)
        if name in ("sha-256", "sha-512") and 0 < weight <= 10 and (best is None or weight > best[0]):
            best = (weight, name)
    return DIGEST_ALGORITHMS[best[1]] if best else None


def digest_field(algorithm: str, digest: bytes) -> str:
    """A one-member ``Repr-Digest`` value for a chunkd algorithm."""
    name = next(k for k, v in DIGEST_ALGORITHMS.items() if v == algorithm)
    return f"{name}=:{base64.b64encode(digest).decode()}:"


def media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


_FILENAME = re.compile(r"""filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))""", re.IGNORECASE)


def disposition_filename(value: str | None) -> str:
    """The ``filename`` parameter of a ``Content-Disposition`` (the draft's way to name the upload)."""
    m = _FILENAME.search(value or "")
    if not m:
        return ""
    name = m.group(1) if m.group(1) is not None else m.group(2)
    return re.sub(r"\\(.)", r"\1", name)[:255]
