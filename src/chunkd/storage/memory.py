"""Byte storage in this process's memory: for tests and throw-away servers (``--storage memory``).

Nothing survives the process, and several processes do not share it, so it suits one process only.
Each piece is its own immutable ``bytes`` (its handle is a random id); assembling copies them into the
object. Folders are emulated from the ``/`` in keys, as object stores do.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from chunkd.core.bytestore import StorageUsage
from chunkd.core.errors import InvalidPath, PathConflict, PiecesMissing
from chunkd.core.models import Listing, ObjectInfo, Piece

READ_SIZE = 1 << 20
ORPHAN_AGE = 600.0  # pieces this young may belong to a write whose session is still being recorded


@dataclass
class _Object:
    data: bytes
    modified_at: float
    version: int


@dataclass
class MemoryPieceWriter:
    store: MemoryStore
    ref: str
    start: int
    parts: list[bytes] = field(default_factory=list)
    done: bool = False

    async def write(self, data: bytes | memoryview) -> None:
        self.parts.append(bytes(data))

    async def finish(self, durable: bool) -> Piece:
        data = b"".join(self.parts)
        handle = secrets.token_hex(8)
        self.store.pieces.setdefault(self.ref, {})[handle] = data
        self.store.touched[self.ref] = time.monotonic()
        self.done = True
        return Piece(self.ref, self.start, self.start + len(data), handle)

    async def abort(self) -> None:
        self.parts.clear()


class MemoryStore:
    """Pieces and objects in dicts."""

    name = "memory"
    copy_free_assembly = False

    def __init__(self) -> None:
        self.pieces: dict[str, dict[str, bytes]] = {}  # ref -> handle -> bytes
        self.objects: dict[tuple[str, str], _Object] = {}
        self.touched: dict[str, float] = {}  # ref -> when a piece last arrived

    def new_ref(self, hint: str) -> str:
        return f"{hint[:64]}-{secrets.token_hex(6)}"

    async def open_piece(self, ref: str, start: int, *, durable: bool) -> MemoryPieceWriter:
        return MemoryPieceWriter(self, ref, start)

    async def discard(self, ref: str) -> None:
        self.pieces.pop(ref, None)
        self.touched.pop(ref, None)

    async def assemble(self, pieces: Sequence[Piece], namespace: str, key: str) -> ObjectInfo:
        _check(namespace, key)
        chunks: list[bytes] = []
        for p in pieces:
            data = self.pieces.get(p.ref, {}).get(p.handle)
            if data is None or len(data) != p.size:
                raise PiecesMissing(f"piece {p.start}-{p.end} of {p.ref} is not in this store")
            chunks.append(data)
        return self._put(namespace, key, b"".join(chunks))

    def _put(self, namespace: str, key: str, data: bytes) -> ObjectInfo:
        segments = key.split("/")
        for i in range(1, len(segments)):
            if (namespace, "/".join(segments[:i])) in self.objects:
                raise PathConflict("a file stands where a folder is needed")
        if self._has_below(namespace, key):
            raise PathConflict(f"{key} is a folder")
        now = time.time()
        old = self.objects.get((namespace, key))
        obj = _Object(data, now, (old.version + 1) if old else time.time_ns())
        self.objects[(namespace, key)] = obj
        return ObjectInfo(namespace, key, len(data), obj.modified_at, obj.version)

    def _has_below(self, namespace: str, prefix: str) -> bool:
        start = f"{prefix}/" if prefix else ""
        return any(ns == namespace and k.startswith(start) for ns, k in self.objects)

    async def stat(self, namespace: str, key: str) -> ObjectInfo | None:
        _check(namespace, key)
        obj = self.objects.get((namespace, key))
        return ObjectInfo(namespace, key, len(obj.data), obj.modified_at, obj.version) if obj else None

    async def read(self, namespace: str, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        _check(namespace, key)
        obj = self.objects.get((namespace, key))
        if obj is None:
            raise FileNotFoundError(key)
        data = obj.data  # a replacement later does not change what this read returns
        end = min(end, len(data))
        for pos in range(start, end, READ_SIZE):
            yield data[pos:min(end, pos + READ_SIZE)]

    async def delete(self, namespace: str, key: str) -> bool:
        _check(namespace, key)
        return self.objects.pop((namespace, key), None) is not None

    # -- capabilities -----------------------------------------------------------------------------
    async def list_folder(self, namespace: str, prefix: str) -> Listing:
        _check(namespace, prefix)
        start = f"{prefix}/" if prefix else ""
        files: list[ObjectInfo] = []
        folders: set[str] = set()
        for (ns, k), obj in sorted(self.objects.items()):
            if ns != namespace or not k.startswith(start):
                continue
            rest = k[len(start):]
            if "/" in rest:
                folders.add(start + rest.split("/", 1)[0])
            else:
                files.append(ObjectInfo(ns, k, len(obj.data), obj.modified_at, obj.version))
        return Listing(files, sorted(folders))

    async def walk(self, namespace: str, prefix: str) -> list[ObjectInfo]:
        _check(namespace, prefix)
        one = await self.stat(namespace, prefix) if prefix else None
        if one is not None:
            return [one]
        start = f"{prefix}/" if prefix else ""
        return sorted((ObjectInfo(ns, k, len(o.data), o.modified_at, o.version)
                       for (ns, k), o in self.objects.items() if ns == namespace and k.startswith(start)),
                      key=lambda i: i.key)

    async def is_folder(self, namespace: str, key: str) -> bool:
        _check(namespace, key)
        return (bool(key) and self._has_below(namespace, key)) or (not key and self._has_below(namespace, ""))

    async def delete_folder(self, namespace: str, prefix: str) -> bool:
        _check(namespace, prefix)
        start = f"{prefix}/" if prefix else ""
        doomed = [k for k in self.objects if k[0] == namespace and k[1].startswith(start)]
        for k in doomed:
            del self.objects[k]
        return bool(doomed)

    async def copy(self, namespace: str, src: str, dst: str) -> ObjectInfo:
        _check(namespace, src)
        _check(namespace, dst)
        obj = self.objects.get((namespace, src))
        if obj is None:
            raise FileNotFoundError(src)
        return self._put(namespace, dst, obj.data)

    async def usage(self) -> StorageUsage:
        staged = [len(b) for pieces in self.pieces.values() for b in pieces.values()]
        used = sum(len(o.data) for o in self.objects.values()) + sum(staged)
        return StorageUsage(capacity=max(used, 1 << 30), available=max(0, (1 << 30) - used),
                            staged_bytes=sum(staged), staged_files=len(self.pieces))

    async def collect_garbage(self, is_live: Callable[[str], Awaitable[bool]]) -> int:
        removed = 0
        recent = time.monotonic() - ORPHAN_AGE
        for ref in list(self.pieces):
            if self.touched.get(ref, 0.0) < recent and not await is_live(ref):
                await self.discard(ref)
                removed += 1
        return removed


def _check(namespace: str, key: str) -> None:
    for part in (namespace, key):
        if part and (part.startswith("/") or any(s in ("", ".", "..") for s in part.split("/")) or "\x00" in part):
            raise InvalidPath(f"bad path {part!r}")
    if not namespace:
        raise InvalidPath("empty namespace")


__all__ = ["MemoryPieceWriter", "MemoryStore"]
