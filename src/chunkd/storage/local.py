"""Byte storage on a local (or shared POSIX) filesystem. The layout is described in
:mod:`chunkd.storage._local_tree`.

Each session has one sparse staged file; its pieces are ``pwrite``\\ s at their offsets (a piece's handle
is this store's id, so that bytes recorded by another node's data directory are recognised as missing
here rather than read as holes). Publishing the pieces of one session in order is a hard link of the
staged file at the object's path (no copy; the cost does not grow with the size), and the staged name
stays until the engine discards it after recording the commit -- so an interrupted commit can simply be
run again. Pieces in another order, or from several sessions, become a composite object that reads
from links of the staged files (again no copy). Staging and objects live on one filesystem.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import anyio.to_thread

from chunkd.core.bytestore import StorageUsage
from chunkd.core.errors import PathConflict, PiecesMissing
from chunkd.core.models import ObjectInfo, Piece
from chunkd.storage._local_folders import LocalFolders
from chunkd.storage._local_io import (
    LocalWriter,
    fit,
    fsync_dir,
    full_or_same,
    pwrite_all,
    read_fd,
    read_small,
    write_durably,
)
from chunkd.storage._local_tree import COMPOSITE_PREFIX, composite_of, kind_of, manifest_runs, open_object

TRASH_GRACE = 3600.0  # composites replaced or deleted stay this long for readers that opened them before
ORPHAN_AGE = 600.0  # leftovers younger than this may belong to an operation still in progress
ORPHAN_SCAN_INTERVAL = 3600.0  # orphans only come from crashes and lost races: look for them rarely


class LocalPieceWriter:
    """One piece: writes go into the session's staged file from ``start`` on."""

    def __init__(self, writer: LocalWriter, ref: str, start: int, handle: str) -> None:
        self._writer, self._ref, self._start, self._handle = writer, ref, start, handle
        self._size = 0

    async def write(self, data: bytes | memoryview) -> None:
        try:
            await self._writer.write(data)
        except OSError as exc:
            raise full_or_same(exc) from exc
        self._size += len(data)

    async def finish(self, durable: bool) -> Piece:
        try:
            await self._writer.flush(durable)
        except OSError as exc:
            raise full_or_same(exc) from exc
        finally:
            await self._writer.close()
        return Piece(self._ref, self._start, self._start + self._size, self._handle)

    async def abort(self) -> None:
        await self._writer.close()


class LocalStore(LocalFolders):
    """Pieces and published objects in directories under ``root``."""

    name = "local"
    copy_free_assembly = True

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.store_id = self._load_store_id()
        self._next_orphan_scan = 0.0  # only a rate limit: any process may scan, results live on disk

    def _load_store_id(self) -> str:
        path = self.root / "store-id"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            pass
        tmp = self.root / f".store-id-{secrets.token_hex(4)}"
        tmp.write_text(secrets.token_hex(8))
        try:
            os.link(tmp, path)  # the first process to get here names the store; the others read it
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return path.read_text().strip()

    # -- pieces -----------------------------------------------------------------------------------
    def new_ref(self, hint: str) -> str:
        safe = "".join(c for c in hint if c.isalnum() or c in "-_")[:64]
        return f"{safe}-{secrets.token_hex(6)}.part"

    async def open_piece(self, ref: str, start: int, *, durable: bool) -> LocalPieceWriter:
        try:
            fd, created = _open_staged(self.stage_path(ref))
        except OSError as exc:
            raise full_or_same(exc) from exc
        if created and durable:  # the staged file's name must survive a crash as its bytes do
            await anyio.to_thread.run_sync(fsync_dir, self.staging)
        return LocalPieceWriter(LocalWriter(fd, start, writeback=durable), ref, start, self.store_id)

    def write_piece_blocking(self, ref: str, start: int, data: Sequence[bytes | memoryview], *,
                             durable: bool) -> Piece:
        """A whole small piece in the calling thread: open, one ``pwritev``, ``fdatasync``, close
        (:class:`chunkd.core.bytestore.BlockingPieces`); the same I/O as ``open_piece`` + ``finish``."""
        try:
            fd, created = _open_staged(self.stage_path(ref))
            try:
                if created and durable:  # the staged file's name must survive a crash as its bytes do
                    fsync_dir(self.staging)
                size = pwrite_all(fd, list(data), start, writeback=False)
                if durable:
                    os.fdatasync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise full_or_same(exc) from exc
        return Piece(ref, start, start + size, self.store_id)

    async def discard(self, ref: str) -> None:
        try:
            self.stage_path(ref).unlink()
        except FileNotFoundError:
            pass

    async def assemble(self, pieces: Sequence[Piece], namespace: str, key: str) -> ObjectInfo:
        dst = self.object_path(namespace, key)
        for p in pieces:
            self.stage_path(p.ref)
            if p.handle not in ("", self.store_id):
                raise PiecesMissing("these bytes were stored in another data directory, not in this server's")

        def run() -> ObjectInfo:
            try:
                if not pieces:
                    self._publish_empty(dst, key)
                elif _linear(pieces):
                    self._publish_linear(pieces[0].ref, pieces[-1].end, dst, key)
                else:
                    self._publish_composite(pieces, namespace, key, dst)
            except OSError as exc:
                if isinstance(exc, FileNotFoundError | NotADirectoryError | IsADirectoryError | FileExistsError):
                    raise
                raise full_or_same(exc) from exc
            info = self.info(namespace, key, dst)
            assert info is not None
            return info

        return await anyio.to_thread.run_sync(run)

    def _staged(self, ref: str, needed: int) -> os.stat_result:
        try:
            st = os.stat(self.stage_path(ref))
        except FileNotFoundError:
            raise PiecesMissing("the session's staged bytes are not in this server's byte store") from None
        if st.st_size < needed:
            raise PiecesMissing("the session's staged file is shorter than its recorded pieces")
        return st

    def _publish_empty(self, dst: Path, key: str) -> None:
        tmp = self.staging / f".empty-{secrets.token_hex(8)}.part"
        write_durably(tmp, b"")
        try:
            self.place(tmp, dst, key)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)

    def _publish_linear(self, ref: str, length: int, dst: Path, key: str) -> None:
        st = self._staged(ref, length)
        try:
            there = os.lstat(dst)
            if (there.st_ino, there.st_dev) == (st.st_ino, st.st_dev):
                return  # published before a crash: this is the retry
        except (FileNotFoundError, NotADirectoryError):
            pass
        src = self.stage_path(ref)
        if st.st_size > length:
            fit(src, length)
        tmp = self.staging / f".link-{secrets.token_hex(8)}.part"
        os.link(src, tmp)
        try:
            self.place(tmp, dst, key)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)

    def _publish_composite(self, pieces: Sequence[Piece], namespace: str, key: str, dst: Path) -> None:
        needed: dict[str, int] = {}
        for p in pieces:
            needed[p.ref] = max(needed.get(p.ref, 0), p.end)
        for ref, end in needed.items():
            self._staged(ref, end)
        self.makedirs(dst.parent)  # refuse a conflicting target before anything is made
        if kind_of(dst) == "dir":
            raise PathConflict(f"{key} is a folder")
        cid = secrets.token_hex(12)
        cdir = self.composites / cid
        cdir.mkdir()
        link_tmp = self.staging / f".link-{cid}.part"
        names = {ref: str(i) for i, ref in enumerate(needed)}
        try:
            for ref, name in names.items():
                os.link(self.stage_path(ref), cdir / name)
            size = sum(p.size for p in pieces)
            manifest = {"namespace": namespace, "key": key, "size": size,
                        "parts": [[names[p.ref], p.start, p.size] for p in pieces if p.size]}
            write_durably(cdir / "manifest.json", json.dumps(manifest).encode())
            fsync_dir(cdir)
            os.symlink(f"{COMPOSITE_PREFIX}{cid}:{size}", link_tmp)
            self.place(link_tmp, dst, key)
        except BaseException:
            shutil.rmtree(cdir, ignore_errors=True)
            if os.path.lexists(link_tmp):
                os.unlink(link_tmp)
            raise

    # -- objects ----------------------------------------------------------------------------------
    async def stat(self, namespace: str, key: str) -> ObjectInfo | None:
        path = self.object_path(namespace, key)
        return await anyio.to_thread.run_sync(self.info, namespace, key, path)

    async def read(self, namespace: str, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        opened = open_object(self.object_path(namespace, key))
        if isinstance(opened, str):
            async for piece in self._read_composite(opened, start, end):
                yield piece
            return
        try:
            async for piece in read_fd(opened, start, end):
                yield piece
        finally:
            os.close(opened)

    async def _read_composite(self, cid: str, start: int, end: int) -> AsyncIterator[bytes]:
        try:
            dfd = os.open(self.composites / cid, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:  # replaced a moment ago: the files wait in the trash
            dfd = os.open(self.trash / cid, os.O_RDONLY | os.O_DIRECTORY)
        try:
            # the directory fd follows the files into the trash, so this read survives a replacement
            runs = manifest_runs(json.loads(read_small(dfd, "manifest.json")))
            pos = 0
            for name, offset, length in runs:
                a, b = max(start, pos), min(end, pos + length)
                if a < b:
                    fd = os.open(name, os.O_RDONLY, dir_fd=dfd)
                    try:
                        async for piece in read_fd(fd, offset + a - pos, offset + b - pos):
                            yield piece
                    finally:
                        os.close(fd)
                pos += length
                if pos >= end:
                    break
        finally:
            os.close(dfd)

    async def delete(self, namespace: str, key: str) -> bool:
        path = self.object_path(namespace, key)

        def remove() -> bool:
            if kind_of(path) not in ("file", "composite"):
                return False
            old = composite_of(path)
            try:
                path.unlink()
            except (FileNotFoundError, NotADirectoryError):
                return False
            fsync_dir(path.parent)
            if old is not None:
                self.to_trash(old[0])
            return True

        return await anyio.to_thread.run_sync(remove)

    # -- capabilities -----------------------------------------------------------------------------
    async def usage(self) -> StorageUsage:
        def run() -> StorageUsage:
            du = shutil.disk_usage(self.root)
            staged = [e for e in os.scandir(self.staging)
                      if e.is_file(follow_symlinks=False) and not e.name.startswith(".")]
            return StorageUsage(capacity=du.total, available=du.free,
                                staged_bytes=sum(e.stat().st_blocks * 512 for e in staged), staged_files=len(staged))

        return await anyio.to_thread.run_sync(run)

    async def collect_garbage(self, is_live: Callable[[str], Awaitable[bool]]) -> int:
        removed, candidates = await anyio.to_thread.run_sync(self._collect)
        for ref in candidates:
            if not await is_live(ref):
                await self.discard(ref)
                removed += 1
        return removed

    def _collect(self) -> tuple[int, list[str]]:
        """Trash past its grace, unreferenced composites, debris of crashed operations; and the staged
        files old enough to be orphans (the caller asks the metadata store about them)."""
        now = time.time()
        removed = 0
        for entry in list(os.scandir(self.trash)):
            if now - entry.stat(follow_symlinks=False).st_mtime > TRASH_GRACE:
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += 1
        if now < self._next_orphan_scan:
            return removed, []
        self._next_orphan_scan = now + ORPHAN_SCAN_INTERVAL
        for entry in list(os.scandir(self.composites)):
            if now - entry.stat(follow_symlinks=False).st_mtime < ORPHAN_AGE:
                continue  # may be an assembly in progress
            try:
                manifest = json.loads((Path(entry.path) / "manifest.json").read_bytes())
                path = self.object_path(manifest["namespace"], manifest["key"])
                alive = composite_of(path) == (entry.name, manifest["size"])
            except (OSError, ValueError, KeyError):
                alive = False  # an assembly that crashed before its manifest was complete
            if not alive:
                self.to_trash(entry.name)
                removed += 1
        candidates: list[str] = []
        for entry in list(os.scandir(self.staging)):
            old = now - entry.stat(follow_symlinks=False).st_mtime > ORPHAN_AGE
            if not old:
                continue
            if entry.name.startswith((".copy-", ".link-", ".deleted-", ".empty-")):
                # these names start with "." and staged refs never do, so a session's bytes are never debris
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
                removed += 1
            elif not entry.name.startswith("."):
                candidates.append(entry.name)
        return removed, candidates


def _linear(pieces: Sequence[Piece]) -> bool:
    """One session's pieces in order, end to end from byte 0: the staged file itself is the object."""
    ref = pieces[0].ref
    pos = 0
    for p in pieces:
        if p.ref != ref or p.start != pos:
            return False
        pos = p.end
    return True


__all__ = ["LocalPieceWriter", "LocalStore"]


def _open_staged(path: Path) -> tuple[int, bool]:
    """The staged file of a piece, for writing, and whether this call created it (a retry reopens it)."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), True
    except FileExistsError:
        return os.open(path, os.O_WRONLY), False
