"""The one way front ends find their answer to a core error: a table per family from core error class
to the family's answer, looked up along the exception's MRO (most specific class first). A test
(``tests/test_error_tables.py``) asserts that every core error has an entry in every family's table,
so nothing the core raises can turn into an unplanned 500."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from chunkd.core.errors import ChunkdError

T = TypeVar("T")

# core errors that ask the client to retry later carry this (seconds)
RETRY_AFTER = "1"
RETRY_AFTER_FULL = "30"  # a full disk is freed by an operator, not in a second


def lookup(table: Mapping[type[ChunkdError], T], error: ChunkdError | type[ChunkdError]) -> T | None:
    """The table's entry for ``error`` (an exception or its class), or None."""
    cls = error if isinstance(error, type) else type(error)
    for base in cls.__mro__:
        if base in table:
            return table[base]
    return None


def retry_after(status: int, error: ChunkdError | None = None) -> dict[str, str]:
    """``Retry-After`` for answers that tell the client to come back (503, 507)."""
    from chunkd.core.errors import StorageFull

    if status in (503, 507):
        return {"Retry-After": RETRY_AFTER_FULL if isinstance(error, StorageFull) else RETRY_AFTER}
    return {}
