"""Service Fabric Image Store wire format: the FabricError response and the parsing of request fields
(the contentPath before a ``$`` action, ``api-version``, ``timeout``, ``session-id``, ``Content-Range``).

Pure functions over strings (and request headers); :mod:`chunkd.protocols.servicefabric` uses them to turn
requests into engine calls. Every refusal is a :class:`FabricError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from starlette.convertors import Convertor, register_url_convertor
from starlette.responses import JSONResponse

from chunkd.core import errors
from chunkd.core.paths import MAX_KEY_LENGTH, MAX_SEGMENT_LENGTH, normalize_key
from chunkd.protocols._parse import UINT64_MAX, parse_uint

RUNTIME_VERSION = 8.2
RANGE_NOT_SATISFIABLE = "FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE"
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_CONTENT_RANGE = re.compile(r"(?:bytes)?\s*([0-9]+)\s*-\s*([0-9]+)\s*/\s*([0-9]+)\s*")
_VERSION = re.compile(r"([0-9]{1,4}(?:\.[0-9]{1,4})?)(?:-[A-Za-z0-9.]*)?")


ACTION_PREFIX = "sfactionprefix"
CONTENT_PATH = "sfcontent"


class _PathConvertor(Convertor[str]):
    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class ActionPrefixConvertor(_PathConvertor):
    """The contentPath before a ``$`` action, as in ``/ImageStore/{content}$/Info``: ``/``-terminated
    segments of any characters but the literal segment ``$``, which starts the action; a ``$`` inside a
    name (``a$b``, ``$x``) is part of the name. Empty for the bare ``/ImageStore/$/Info``. The value is the
    contentPath without its last ``/``, so ``/ImageStore//etc/$/Content`` keeps the leading separator and is
    refused as absolute by :func:`content_key`."""

    regex = r"(?:(?!\$/)[^/]*/)*"

    def convert(self, value: str) -> str:
        return value.removesuffix("/")


class ContentPathConvertor(_PathConvertor):
    """A contentPath without an action, as in ``/ImageStore/{content}``: ``/``-separated segments of any
    characters, none of them the literal ``$`` (a path with one names an action)."""

    regex = r"(?!\$(?:/|\Z))[^/]*(?:/(?!\$(?:/|\Z))[^/]*)*"


register_url_convertor(ACTION_PREFIX, ActionPrefixConvertor())
register_url_convertor(CONTENT_PATH, ContentPathConvertor())


class FabricError(Exception):
    """A FabricError response: HTTP ``status``, ``Error.Code``, ``Error.Message`` and extra headers."""

    def __init__(self, status: int, code: str, message: str = "", headers: dict[str, str] | None = None) -> None:
        super().__init__(message or code)
        self.status, self.code, self.message = status, code, message or code
        self.headers = headers or {}


def fabric_error_response(status: int, code: str, message: str,
                          headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"Error": {"Code": code, "Message": message}}, status_code=status, headers=headers)


def content_key(content: str, *, allow_empty: bool = False) -> str:
    """A contentPath as a store key; 400 when it would leave the store root or is too long."""
    if content.startswith(("/", "\\")):
        raise FabricError(400, "E_INVALIDARG", "contentPath must be relative to the image store root")
    try:
        return normalize_key(content, allow_empty=allow_empty)
    except errors.InvalidPath as exc:
        segments = re.split(r"[/\\]", content)
        if len(content.encode()) > MAX_KEY_LENGTH or any(len(s.encode()) > MAX_SEGMENT_LENGTH for s in segments):
            raise FabricError(400, "FABRIC_E_PATH_TOO_LONG", exc.message) from exc
        raise


def check_api_version(value: str | None, minimum: float) -> None:
    if value is None:
        raise FabricError(400, "E_INVALIDARG", "api-version is required")
    m = _VERSION.fullmatch(value)
    if not m:  # float() alone would take "nan", "inf" and "1e3"
        raise FabricError(400, "E_INVALIDARG", f"api-version {value!r} is not a version number like 6.0")
    version = float(m.group(1))
    if version < minimum:
        raise FabricError(400, "E_INVALIDARG", f"this operation needs api-version {minimum} or later")
    if version > RUNTIME_VERSION:
        raise FabricError(400, "E_INVALIDARG", f"api-version {value} is newer than this server ({RUNTIME_VERSION})")


def parse_timeout(value: str | None) -> float:
    if value is None:
        return 60.0
    seconds = parse_uint(value.strip(), 4294967295)
    if seconds is None:
        raise FabricError(400, "E_INVALIDARG", "timeout must be a whole number of seconds up to 4294967295")
    if seconds < 1:
        raise FabricError(400, "E_INVALIDARG", "timeout must be between 1 and 4294967295 seconds")
    return float(seconds)


def parse_session_id(value: str | None, code: str) -> str:
    # fullmatch: "$" would also match before a final newline and let "<guid>\n" in as another id
    if not value or not _GUID.fullmatch(value) or set(value) <= {"0", "-"}:
        raise FabricError(400, code, "session-id must be a GUID like 4a2340e8-d8d8-497c-95fe-cdaa1052f33b")
    return value.lower()


def parse_content_range(value: str | None) -> tuple[int, int, int]:
    """``bytes S-E/T`` (inclusive) -> half-open (start, end, total); ``0-0/0`` is the empty file."""
    if not value:
        raise FabricError(400, RANGE_NOT_SATISFIABLE, "the Content-Range header is required")
    m = _CONTENT_RANGE.fullmatch(value.strip())
    if not m:
        raise FabricError(400, RANGE_NOT_SATISFIABLE,
                          f"malformed Content-Range {value[:100]!r}; expected 'bytes S-E/T'")
    numbers = [parse_uint(g) for g in m.groups()]
    if None in numbers:
        raise FabricError(400, RANGE_NOT_SATISFIABLE, f"Content-Range values must be at most {UINT64_MAX}")
    start, last, total = (n or 0 for n in numbers)
    if total == 0 and start == 0 and last == 0:
        return 0, 0, 0
    if start > last:
        raise FabricError(400, RANGE_NOT_SATISFIABLE, "Content-Range start is after its end")
    if last >= total:
        raise FabricError(400, RANGE_NOT_SATISFIABLE, "Content-Range ends at or beyond the file size")
    return start, last + 1, total


def check_content_length(headers: Mapping[str, str], expected: int) -> None:
    """A declared Content-Length must be the range's length (a malformed one never reaches here: the HTTP
    server refuses it)."""
    declared = headers.get("content-length")
    if declared is not None and parse_uint(declared.strip()) != expected:
        raise FabricError(400, "E_INVALIDARG",
                          f"the body has {declared[:40]} bytes but Content-Range covers {expected}")
