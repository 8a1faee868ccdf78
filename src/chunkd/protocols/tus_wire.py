"""tus 1.0 wire format: header parsing and formatting, the error table, proxy-aware base URLs.

Pure functions over header values; :mod:`chunkd.protocols.tus` uses them to translate requests into
service calls. Every client-visible error is a :class:`TusError`, answered by :func:`error_response`
(plain-text body ``ERR_CODE: message``, like tusd); core errors are mapped in :data:`CORE_ERRORS`, the
tus service's refusals in :data:`FAULTS`.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import quote, urlsplit

from starlette.responses import PlainTextResponse, Response

from chunkd.core import errors
from chunkd.core.body import ClientGone
from chunkd.core.checksum import ALGORITHMS, ChecksumIncomplete, UnsupportedAlgorithm
from chunkd.protocols import _parse
from chunkd.protocols._errors import lookup, retry_after
from chunkd.services.tus_records import FaultCode, TusFault

TUS_VERSION = "1.0.0"
OFFSET_STREAM = "application/offset+octet-stream"
EXTENSIONS = ("creation", "creation-with-upload", "creation-defer-length", "expiration", "checksum",
              "termination", "concatenation", "concatenation-unfinished")
CHECKSUM_ALGORITHMS = ("sha1", "sha256", "sha512", "md5", "crc32")
assert set(CHECKSUM_ALGORITHMS) <= set(ALGORITHMS)
# used with fullmatch: "$" would also match before a final newline
UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
_META_KEY = re.compile(r"[^\s,]+")
_SAFE_TYPE = re.compile(r"[A-Za-z0-9][\w.+-]*/[\w.+-]+", re.ASCII)


class TusError(Exception):
    """A tus error response: status, ``ERR_CODE`` and message, plus extra headers (409's Upload-Offset)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


# core error -> (status, code); looked up along the exception's MRO, most specific first
CORE_ERRORS: dict[type[errors.ChunkdError], tuple[int, str]] = {
    errors.ChecksumMismatch: (460, "ERR_CHECKSUM_MISMATCH"),
    UnsupportedAlgorithm: (400, "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM"),
    ChecksumIncomplete: (400, "ERR_UNEXPECTED_EOF"),
    errors.LengthMismatch: (400, "ERR_INVALID_UPLOAD_LENGTH"),
    errors.InvalidRange: (400, "ERR_INVALID_OFFSET"),
    errors.InvalidInput: (400, "ERR_INVALID_REQUEST"),
    errors.TooLarge: (413, "ERR_UPLOAD_SIZE_EXCEEDED"),
    errors.SessionNotFound: (404, "ERR_UPLOAD_NOT_FOUND"),
    errors.ObjectNotFound: (404, "ERR_UPLOAD_NOT_FOUND"),
    errors.PermissionDenied: (404, "ERR_UPLOAD_NOT_FOUND"),  # never reveal that another principal's id exists
    errors.SessionGone: (410, "ERR_UPLOAD_GONE"),
    errors.OffsetMismatch: (409, "ERR_MISMATCHED_OFFSET"),
    errors.RangeBusy: (423, "ERR_UPLOAD_LOCKED"),
    errors.WriteInterrupted: (400, "ERR_UPLOAD_INTERRUPTED"),
    errors.Conflict: (423, "ERR_UPLOAD_LOCKED"),  # a concurrent change: clients retry 423
    errors.NotFound: (404, "ERR_UPLOAD_NOT_FOUND"),
    ClientGone: (400, "ERR_UNEXPECTED_EOF"),
    errors.PiecesMissing: (503, "ERR_UPLOAD_UNAVAILABLE"),
    errors.StorageFull: (507, "ERR_INSUFFICIENT_STORAGE"),  # tus clients retry 5xx
    errors.StorageUnavailable: (503, "ERR_STORAGE_UNAVAILABLE"),
}


# the tus service's refusal -> status (the code is the answer's ERR_ code)
FAULTS: dict[FaultCode, int] = {
    FaultCode.INVALID_CONCAT: 400,
    FaultCode.MAX_SIZE_EXCEEDED: 413,
    FaultCode.UPLOAD_SIZE_EXCEEDED: 413,
    FaultCode.MODIFY_FINAL: 403,
    FaultCode.NOT_FINISHED: 400,
}


def error_response(exc: TusError) -> Response:
    """The plain-text answer to ``exc``, with ``Tus-Resumable`` and the error's own headers."""
    headers = {"Tus-Resumable": TUS_VERSION, **exc.headers}
    return PlainTextResponse(f"{exc.code}: {exc.message}\n", status_code=exc.status, headers=headers)


def map_core_error(exc: errors.ChunkdError) -> TusError:
    entry = lookup(CORE_ERRORS, exc)
    if entry is None:
        return TusError(500, "ERR_INTERNAL_SERVER_ERROR", "internal error")
    status, code = entry
    headers = {"Upload-Offset": str(exc.offset)} if isinstance(exc, errors.OffsetMismatch) else {}
    return TusError(status, code, exc.message, {**headers, **retry_after(status, exc)})


def map_fault(exc: TusFault) -> TusError:
    return TusError(FAULTS[exc.code], exc.code.value, exc.message)


def parse_uint(value: str | None, header: str, code: str) -> int | None:
    """A non-negative decimal integer header, None when absent; TusError 400 when malformed."""
    if value is None:
        return None
    number = _parse.parse_uint(value.strip(), _parse.INT64_MAX)
    if number is None:
        raise TusError(400, code, f"{header} must be a non-negative 63-bit integer, not {value[:40]!r}")
    return number


def parse_metadata(value: str | None) -> list[tuple[str, str]]:
    """``Upload-Metadata`` as ordered ``(key, base64 value)`` pairs. An empty header is no metadata (tuspy
    always sends one). Keys must be unique and free of spaces and commas; values valid base64."""
    if value is None or not value.strip():
        return []
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in value.split(","):
        parts = item.strip().split(" ")
        key, encoded = parts[0], (parts[1] if len(parts) > 1 else "")
        if len(parts) > 2 or not _META_KEY.fullmatch(key):
            raise TusError(400, "ERR_INVALID_METADATA", f"malformed Upload-Metadata pair {item.strip()!r}")
        if key in seen:
            raise TusError(400, "ERR_INVALID_METADATA", f"Upload-Metadata key {key!r} appears twice")
        try:
            base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise TusError(400, "ERR_INVALID_METADATA", f"the value of {key!r} is not base64") from exc
        seen.add(key)
        pairs.append((key, encoded))
    return pairs


def format_metadata(pairs: list[tuple[str, str]]) -> str:
    return ",".join(f"{k} {v}" if v else k for k, v in pairs)


def decoded_text(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Values that decode to printable UTF-8 (the rest are kept only in their base64 form)."""
    out: dict[str, str] = {}
    for key, encoded in pairs:
        try:
            text = base64.b64decode(encoded).decode("utf-8")
        except UnicodeDecodeError:
            continue
        if text.isprintable():
            out[key] = text
    return out


def safe_media_type(value: str) -> str:
    """The stored ``filetype`` if it is a plain media type and not active content, else octet-stream."""
    lowered = value.lower()
    if _SAFE_TYPE.fullmatch(value) and not any(t in lowered for t in ("html", "javascript", "xml", "svg")):
        return value
    return "application/octet-stream"


def content_disposition(name: str) -> str:
    """``attachment`` with the upload's file name: plain for printable ASCII, RFC 8187 ``filename*`` else."""
    name = "".join(c for c in name if c.isprintable() and c not in '"\\/')
    if not name:
        return "attachment"
    if name.isascii():
        return f'attachment; filename="{name}"'
    return f"attachment; filename*=UTF-8''{quote(name, safe='')}"


def parse_checksum(value: str | None) -> tuple[str, bytes] | None:
    """``Upload-Checksum: <algorithm> <base64 digest>``; 400 for unknown algorithms or bad base64."""
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise TusError(400, "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM",
                       f"unsupported checksum algorithm {algorithm!r}; supported: {','.join(CHECKSUM_ALGORITHMS)}")
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise TusError(400, "ERR_INVALID_CHECKSUM", "the Upload-Checksum digest is not base64") from exc
    if not digest:
        raise TusError(400, "ERR_INVALID_CHECKSUM", "the Upload-Checksum digest is empty")
    return algorithm, digest


def parse_concat(value: str | None) -> tuple[str, list[str]]:
    """``Upload-Concat``: ("", []) when absent, ("partial", []) or ("final", [upload ids])."""
    if value is None:
        return "", []
    value = value.strip()
    if value == "partial":
        return "partial", []
    kind, sep, urls = value.partition(";")
    if kind.strip() != "final" or not sep:
        raise TusError(400, "ERR_INVALID_CONCAT", f"Upload-Concat must be 'partial' or 'final;<urls>', not {value!r}")
    ids = [upload_id_from_url(u) for u in urls.split()]
    if not ids:
        raise TusError(400, "ERR_INVALID_CONCAT", "Upload-Concat: final lists no uploads")
    return "final", ids


def upload_id_from_url(url: str) -> str:
    """The upload id of an absolute (``http://h/files/ID``) or relative (``/files/ID``) upload URL."""
    path = urlsplit(url).path.rstrip("/")
    upload_id = path.rsplit("/", 1)[-1]
    if not UPLOAD_ID.fullmatch(upload_id):
        raise TusError(400, "ERR_INVALID_CONCAT", f"{url!r} is not an upload URL of this server")
    return upload_id


