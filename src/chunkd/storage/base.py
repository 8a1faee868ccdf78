"""The byte storage interface.

A byte store holds two kinds of bytes:

* **staged** bytes of open sessions, addressed by an opaque ``ref`` the store hands out, written at
  arbitrary offsets (sparse) by any number of writers in any number of processes;
* **published** objects, addressed by ``(namespace, key)`` where ``key`` is an already validated
  ``/``-separated relative path (see :func:`chunkd.core.paths.normalize_key`).

Stores never see HTTP, sessions or principals. Every method may be called concurrently from several
processes on the same data; stores must keep what they promise below under that condition.

``namespace`` is chosen by a front end (``imagestore``, ``tus``, ``blob``...): one or more ``/``-separated
segments, never empty, ``.`` or ``..``. A store refuses (InvalidPath) any namespace or key that would
leave its area, even though the core validates keys first. Every implementation must pass
``tests/conformance/storage_suite.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from chunkd.core.models import Listing, ObjectInfo

__all__ = ["ByteStorage", "StagedWriter"]


class StagedWriter(Protocol):
    """Writes into one staged object, sequentially from the offset it was opened at."""

    async def write(self, data: bytes | memoryview) -> None:
        """Write ``data`` at the current position and advance it. May buffer."""

    async def skip(self, count: int) -> None:
        """Advance the position by ``count`` bytes without writing (bytes already stored)."""

    async def seek(self, offset: int) -> None:
        """Move to ``offset`` (flushes buffered data first)."""

    async def flush(self, durable: bool) -> None:
        """Write out buffered data; with ``durable`` the bytes survive a crash once this returns."""

    async def close(self) -> None:
        """Release resources. Does not imply durability: call ``flush(True)`` first."""


class ByteStorage(Protocol):
    """Staged and published bytes. See the module docstring for the model."""

    name: str

    async def stage_create(self, hint: str) -> str:
        """Create an empty staged object and return its ref. ``hint`` (a session id) may appear in names."""

    async def stage_open(self, ref: str, offset: int, *, durable: bool = True) -> StagedWriter:
        """Open a writer at ``offset``. Raises FileNotFoundError if ``ref`` is unknown. ``durable=False``
        says the writer will be flushed without ``durable``, so it need not prepare for a sync."""

    def stage_read(self, ref: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Yield the staged bytes ``[start, end)``; bytes never written read as zeros."""

    async def stage_discard(self, ref: str) -> None:
        """Delete staged bytes. Idempotent."""

    async def stage_exists(self, ref: str) -> bool:
        """True while the staged object exists (it stops existing once published or discarded)."""

    async def publish(self, ref: str, namespace: str, key: str, length: int) -> ObjectInfo:
        """Make staged bytes ``[0, length)`` the object ``namespace/key``, atomically and durably.

        Readers see the previous object or the new one, never a mix; an existing object is replaced;
        missing parent folders are created. The staged object is consumed. Local storage does this
        without copying (rename), so the cost does not grow with ``length``. Raises FileNotFoundError
        if ``ref`` no longer exists, PathConflict when a folder has the target's name or a file stands
        where one of its parent folders should be (nothing is consumed then).
        """

    async def publish_composite(self, parts: list[tuple[str, int]], namespace: str, key: str) -> ObjectInfo:
        """Make the concatenation of staged parts the object ``namespace/key``, atomically.

        ``parts`` are ``(ref, length)`` pairs in order; each contributes its staged bytes ``[0, length)``.
        The same ref may appear more than once (with the same length). Like :meth:`publish`: readers see
        the previous object or the new one, an existing object is replaced, and the staged parts are
        consumed. No parts publishes an empty object. If this raises, every part is still staged and
        unchanged (nothing was consumed). Local storage does not copy bytes: the object's listings,
        ``stat``, ``read``, ``walk``, ``copy`` and ``delete`` treat it like any other object of the
        parts' total size. Raises FileNotFoundError if a ref does not exist, PathConflict when a
        folder has the target's name.
        """

    async def collect_garbage(self) -> int:
        """Remove storage-internal leftovers (parts of replaced composite objects once no reader can still
        need them, debris of crashed operations). Never touches staged objects or live objects. Safe to
        run in every process at once; returns how many items were removed."""

    async def stat(self, namespace: str, key: str) -> ObjectInfo | None:
        """The object at ``key``, or None (also when ``key`` is a folder)."""

    async def is_folder(self, namespace: str, key: str) -> bool:
        """True when ``key`` is a folder (has objects below it)."""

    def read(self, namespace: str, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Yield bytes ``[start, end)`` of an object. Raises FileNotFoundError if it does not exist."""

    async def list_folder(self, namespace: str, prefix: str) -> Listing:
        """Immediate children of folder ``prefix`` ("" = root): files and folder keys."""

    async def walk(self, namespace: str, prefix: str) -> list[ObjectInfo]:
        """Every object below folder ``prefix``, recursively, sorted by key (plain string order); the
        object itself when ``prefix`` is an object; empty when nothing is there."""

    async def delete(self, namespace: str, key: str) -> bool:
        """Delete an object, or a folder recursively. False when nothing was there."""

    async def copy(self, namespace: str, src: str, dst: str, skip: frozenset[str]) -> int:
        """Copy an object or folder to ``dst`` (replacing), skipping file names in ``skip``; count copied."""

    async def usage(self) -> dict[str, int]:
        """Capacity figures: ``capacity``, ``available``, ``staged_bytes``, ``staged_files``."""
