"""The byte store port: pieces of session bytes go in, published objects come out.

A session's bytes enter the store as immutable *pieces*: :meth:`ByteStore.open_piece` returns a writer
for the run of bytes starting at ``start`` of the session's staging area ``ref``, and its
:meth:`PieceWriter.finish` returns a :class:`~chunkd.core.models.Piece` whose handle the engine records
in the same metadata transaction as the range the piece makes durable. A piece that is never recorded
(its writer lost the race, or its process died) is garbage: nothing refers to it and
:meth:`ByteStore.discard` or garbage collection removes it. :meth:`ByteStore.assemble` publishes a
list of recorded pieces, in order, as one object, atomically.

Stores never see HTTP, sessions or principals. Every method may be called concurrently from several
processes on several machines; the store must keep what it promises below under that condition. It
must never rely on two writers touching the same piece: the claim policy guarantees that pieces of one
session do not overlap.

``namespace`` is chosen by a front end (``imagestore``, ``tus``, ``blob``...): one or more
``/``-separated segments, never empty, ``.`` or ``..``; ``key`` is a validated ``/``-separated relative
path (:func:`chunkd.core.paths.normalize_key`). A store refuses (InvalidPath) any namespace or key that
would leave its area. A store that runs out of space raises StorageFull, and nothing it had already
acknowledged is lost.

Optional capabilities are small protocols of their own (:class:`Folders`, :class:`ServerSideCopy`,
:class:`UsageReport`, :class:`GarbageCollecting`); :func:`detect_capabilities` records once, at start-up,
which ones a store has. Every implementation must pass ``tests/conformance/storage_suite.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from chunkd.core.models import Listing, ObjectInfo, Piece

__all__ = [
    "BlockingPieces",
    "ByteStore",
    "Capabilities",
    "Folders",
    "GarbageCollecting",
    "PieceWriter",
    "ServerSideCopy",
    "StorageUsage",
    "UsageReport",
    "detect_capabilities",
]


class PieceWriter(Protocol):
    """Writes one piece, sequentially from the offset it was opened at."""

    async def write(self, data: bytes | memoryview) -> None:
        """Append ``data`` to the piece. May buffer; may raise StorageFull."""

    async def finish(self, durable: bool) -> Piece:
        """Complete the piece. With ``durable`` its bytes survive a crash (and a power loss) once this
        returns. An empty piece is allowed. The writer is closed afterwards."""

    async def abort(self) -> None:
        """Give up the piece; what was written is garbage. Idempotent, and safe after ``finish``."""


class ByteStore(Protocol):
    """Pieces and published objects. See the module docstring for the model."""

    name: str

    def new_ref(self, hint: str) -> str:
        """A new, unique staging ref for a session; ``hint`` (the session id) may appear in names. No
        I/O: the staging area comes into being with its first piece."""

    async def open_piece(self, ref: str, start: int, *, durable: bool) -> PieceWriter:
        """A writer for a new piece of ``ref`` starting at byte ``start``. ``durable=False`` says it
        will be finished without ``durable``, so it need not prepare for a sync."""

    async def assemble(self, pieces: Sequence[Piece], namespace: str, key: str) -> ObjectInfo:
        """Publish the concatenation of ``pieces`` (in the given order, of one or several refs) as the
        object ``namespace/key``, atomically and durably: readers see the previous object or the new one,
        never a mix, an existing object is replaced, missing parent folders are created.

        Idempotent: after a crash the engine calls it again with the same pieces, and it succeeds (the
        object is those bytes) as long as the pieces are still staged; pieces stay staged until
        :meth:`discard`. Raises PiecesMissing when a piece is not (or no longer) in this store --
        nothing is published then; PathConflict when a folder has the target's name or a file stands
        where one of its parent folders should be.
        """

    async def discard(self, ref: str) -> None:
        """Delete everything staged under ``ref`` (recorded pieces or not). Published objects that were
        assembled from it are unaffected. Idempotent."""

    async def stat(self, namespace: str, key: str) -> ObjectInfo | None:
        """The object at ``key``, or None (also when ``key`` is a folder)."""

    def read(self, namespace: str, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Yield bytes ``[start, end)`` of an object, clipped to its size. Raises FileNotFoundError when
        it does not exist. A read that started before the object was replaced or deleted finishes with
        the old bytes."""

    async def delete(self, namespace: str, key: str) -> bool:
        """Delete an object; False when there was none. Idempotent."""


@runtime_checkable
class Folders(Protocol):
    """Keys with ``/`` form folders that can be listed (Service Fabric content listings)."""

    async def list_folder(self, namespace: str, prefix: str) -> Listing:
        """Immediate children of folder ``prefix`` ("" = root): files and folder keys."""

    async def walk(self, namespace: str, prefix: str) -> list[ObjectInfo]:
        """Every object below folder ``prefix``, recursively, sorted by key (plain string order); the
        object itself when ``prefix`` is an object; empty when nothing is there."""

    async def is_folder(self, namespace: str, key: str) -> bool:
        """True when ``key`` is a folder (has objects below it)."""

    async def delete_folder(self, namespace: str, prefix: str) -> bool:
        """Delete every object below ``prefix``; False when there was none. Readers never see a
        half-deleted folder under its old name where the store can avoid it."""


@runtime_checkable
class ServerSideCopy(Protocol):
    """Objects can be copied without the bytes passing through chunkd."""

    async def copy(self, namespace: str, src: str, dst: str) -> ObjectInfo:
        """Copy one object to ``dst`` (replacing it atomically). FileNotFoundError when ``src`` does not
        exist."""


@dataclass(frozen=True)
class StorageUsage:
    capacity: int
    available: int
    staged_bytes: int
    staged_files: int


@runtime_checkable
class UsageReport(Protocol):
    """The store knows its capacity (Service Fabric image store info)."""

    async def usage(self) -> StorageUsage:
        """Capacity figures."""


@runtime_checkable
class BlockingPieces(Protocol):
    """Optional: a whole small piece written from memory by a plain function that blocks the calling
    (worker) thread -- the engine's one-hop path for small chunks (:mod:`chunkd.core.small_writes`)."""

    def write_piece_blocking(self, ref: str, start: int, data: Sequence[bytes | memoryview], *,
                             durable: bool) -> Piece:
        """``open_piece(ref, start)``, write ``data`` in order and ``finish(durable)``, in one call. On an
        error nothing is recorded anywhere and what was written is garbage, as after ``abort``."""


@runtime_checkable
class GarbageCollecting(Protocol):
    """The store can find its own leftovers: staging areas of sessions that no longer exist, parts of
    replaced composite objects, debris of crashed operations."""

    async def collect_garbage(self, is_live: Callable[[str], Awaitable[bool]]) -> int:
        """Remove leftovers older than the store's grace period. ``is_live(ref)`` tells whether a staging
        ref still belongs to a live session (asked of the metadata store); refs it says are dead are
        discarded. Never touches live staging areas or objects. Safe to run in every process at once;
        returns how many items were removed."""


@dataclass(frozen=True)
class Capabilities:
    """What a byte store can do beyond the required port, recorded once at start-up."""

    folders: bool
    server_side_copy: bool
    usage: bool
    garbage_collection: bool
    copy_free_assembly: bool  # assemble() of pieces in any order does not copy bytes
    blocking_pieces: bool = False  # BlockingPieces: small chunks take one worker-thread hop

    def describe(self) -> str:
        on = [name for name, value in vars(self).items() if value]
        return ",".join(on) or "none"


def detect_capabilities(store: ByteStore) -> Capabilities:
    return Capabilities(
        folders=isinstance(store, Folders),
        server_side_copy=isinstance(store, ServerSideCopy),
        usage=isinstance(store, UsageReport),
        garbage_collection=isinstance(store, GarbageCollecting),
        copy_free_assembly=bool(getattr(store, "copy_free_assembly", False)),
        blocking_pieces=isinstance(store, BlockingPieces),
    )
