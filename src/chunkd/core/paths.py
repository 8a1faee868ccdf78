"""Validation of object keys: the one place that decides what may become a path on disk."""

from __future__ import annotations

import re

from chunkd.core.errors import InvalidPath

MAX_KEY_LENGTH = 1024
MAX_SEGMENT_LENGTH = 255
_DRIVE = re.compile(r"^[A-Za-z]:")
_BAD_CHARS = set("\x00") | {chr(c) for c in range(1, 32)}


def normalize_key(raw: str, *, allow_empty: bool = False) -> str:
    """Turn a client path into a store key of ``/``-separated segments, or raise InvalidPath.

    Both ``/`` and ``\\`` separate segments (Service Fabric clients send either). Refused: ``..`` and ``.``
    segments, absolute paths, drive letters, control characters including NUL, over-long keys or segments.
    Empty segments (``a//b``) collapse.
    """
    if any(ch in _BAD_CHARS for ch in raw):
        raise InvalidPath("path contains control characters")
    # a single leading separator is how some clients write a relative path; two start a UNC/absolute path
    if raw.startswith(("//", "\\\\", "/\\", "\\/")):
        raise InvalidPath("absolute or UNC paths are not allowed")
    if _DRIVE.match(raw):
        raise InvalidPath("drive letters are not allowed")
    segments = [s for s in re.split(r"[/\\]", raw) if s != ""]
    for seg in segments:
        if seg in (".", ".."):
            raise InvalidPath("'.' and '..' segments are not allowed")
        if len(seg.encode()) > MAX_SEGMENT_LENGTH:
            raise InvalidPath("path segment too long")
        if seg != seg.strip() and seg.strip() in (".", ".."):
            raise InvalidPath("'.' and '..' segments are not allowed")
    key = "/".join(segments)
    if len(key.encode()) > MAX_KEY_LENGTH:
        raise InvalidPath("path too long")
    if not key and not allow_empty:
        raise InvalidPath("path is empty")
    return key
