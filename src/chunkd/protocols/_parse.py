"""Bounded parsing of untrusted text, shared by every front end: unsigned integers and JSON documents.

Python's own conversions are unsafe on hostile input in ways that are easy to miss: ``int()`` raises
ValueError beyond 4,300 digits and accepts ``" 7"``, ``"+7"``, ``"7_0"`` and non-ASCII digits (``"٣"``);
``str.isdigit()`` is true for ``"²"``, which ``int()`` then refuses; ``json.loads`` raises RecursionError (not
ValueError) on deeply nested arrays and accepts ``NaN``. The functions here never raise anything but the
documented exceptions, whatever the input, so a handler can turn every refusal into its protocol's 400.
"""

from __future__ import annotations

import json
from typing import Any

UINT64_MAX = (1 << 64) - 1
INT64_MAX = (1 << 63) - 1
MAX_JSON_DEPTH = 64  # the deepest document any client of these APIs sends has a depth below 10


def is_ascii_digits(text: str) -> bool:
    """True for a non-empty string of ``0``-``9`` only (no sign, space, underscore or other script)."""
    return text.isascii() and text.isdigit()


def parse_uint(text: str | None, maximum: int = UINT64_MAX) -> int | None:
    """``text`` as a decimal integer in ``0..maximum``; None when it is anything else (including absent).

    Leading zeros are allowed. The length is checked before converting, so a 5,000-digit value costs
    nothing and raises nothing.
    """
    if text is None or not is_ascii_digits(text):
        return None
    significant = text.lstrip("0") or "0"
    if len(significant) > len(str(maximum)):
        return None
    value = int(significant)
    return value if value <= maximum else None


class JsonError(ValueError):
    """The text is not a JSON document chunkd accepts (malformed, ``NaN``/``Infinity``, or nested too deep)."""


def _no_constants(name: str) -> Any:
    raise JsonError(f"{name} is not a JSON value")


def loads_json(raw: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON document in ``raw`` (UTF-8/16/32 bytes or text), nested at most ``max_depth`` deep.

    Raises only :class:`JsonError`.
    """
    try:
        value = json.loads(raw, parse_constant=_no_constants)
    except RecursionError as exc:  # the C scanner's own guard: far deeper than max_depth
        raise JsonError(f"the document is nested more than {max_depth} levels deep") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, integers beyond 4,300 digits
        raise JsonError("the document is not valid JSON") from exc
    if _depth_exceeds(value, max_depth):
        raise JsonError(f"the document is nested more than {max_depth} levels deep")
    return value


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether containers nest deeper than ``limit``; iterative, so it cannot itself recurse too deep."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
