"""Byte storage on a local (or shared POSIX) filesystem.

Layout under the root directory::

    staging/<hint>-<random>.part      staged bytes of open sessions, sparse, written with pwrite
    objects/<namespace>/<key>         published objects; folders are directories

Staging and objects live on one filesystem, so publishing is a ``rename`` (no copy) followed by an
fsync of the directory. Any number of processes may write to one staged file at disjoint offsets; the
metadata store decides who writes where.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import anyio.to_thread

from chunkd.core.errors import InvalidPath, PathConflict
from chunkd.core.models import Listing, ObjectInfo

FLUSH_AT = 1 << 20  # buffer up to 1 MiB of body pieces before one pwritev
READ_SIZE = 1 << 20


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalWriter:
    def __init__(self, fd: int, offset: int) -> None:
        self._fd = fd
        self._pos = offset
        self._buf: list[bytes | memoryview] = []
        self._buffered = 0
        self._buf_start = offset

    async def write(self, data: bytes | memoryview) -> None:
        if not self._buf:
            self._buf_start = self._pos
        self._buf.append(data)
        self._buffered += len(data)
        self._pos += len(data)
        if self._buffered >= FLUSH_AT:
            await self._drain()

    async def skip(self, count: int) -> None:
        await self._drain()
        self._pos += count

    async def seek(self, offset: int) -> None:
        await self._drain()
        self._pos = offset

    async def _drain(self) -> None:
        if not self._buf:
            return
        bufs, start = self._buf, self._buf_start
        self._buf, self._buffered = [], 0
        await anyio.to_thread.run_sync(_pwrite_all, self._fd, bufs, start)

    async def flush(self, durable: bool) -> None:
        await self._drain()
        if durable:
            await anyio.to_thread.run_sync(os.fdatasync, self._fd)

    async def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _pwrite_all(fd: int, bufs: list[bytes | memoryview], offset: int) -> None:
    total = sum(len(b) for b in bufs)
    written = os.pwritev(fd, bufs, offset)
    if written < total:  # short write: fall back to writing the remainder piece by piece
        data = b"".join(bytes(b) for b in bufs)[written:]
        offset += written
        while data:
            n = os.pwrite(fd, data, offset)
            data, offset = data[n:], offset + n


class LocalStorage:
    """Staged and published bytes in directories under ``root``."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.staging = self.root / "staging"
        self.objects = self.root / "objects"
        self.staging.mkdir(parents=True, exist_ok=True)
        self.objects.mkdir(parents=True, exist_ok=True)

    # -- paths ------------------------------------------------------------------------------------
    def _stage_path(self, ref: str) -> Path:
        if "/" in ref or "\\" in ref or ref.startswith(".") or not ref:
            raise InvalidPath("bad staging ref")
        return self.staging / ref

    def _object_path(self, namespace: str, key: str) -> Path:
        base = self.objects / namespace
        path = base / key if key else base
        # keys are validated by the core; this is defence in depth against symlinks or bugs
        real = Path(os.path.realpath(path))
        if real != base.resolve() and not str(real).startswith(str(base.resolve()) + os.sep):
            raise InvalidPath("path escapes the store")
        return path

    # -- staging ----------------------------------------------------------------------------------
    async def stage_create(self, hint: str) -> str:
        safe = "".join(c for c in hint if c.isalnum() or c in "-_")[:64]
        ref = f"{safe}-{secrets.token_hex(6)}.part"
        path = self._stage_path(ref)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        await anyio.to_thread.run_sync(_fsync_dir, self.staging)
        return ref

    async def stage_open(self, ref: str, offset: int) -> LocalWriter:
        fd = os.open(self._stage_path(ref), os.O_WRONLY)
        return LocalWriter(fd, offset)

    async def stage_read(self, ref: str, start: int, end: int) -> AsyncIterator[bytes]:
        async for piece in self._read_path(self._stage_path(ref), start, end):
            yield piece

    async def stage_discard(self, ref: str) -> None:
        try:
            self._stage_path(ref).unlink()
        except FileNotFoundError:
            pass

    async def stage_exists(self, ref: str) -> bool:
        return self._stage_path(ref).exists()

    async def publish(self, ref: str, namespace: str, key: str, length: int) -> ObjectInfo:
        src = self._stage_path(ref)
        dst = self._object_path(namespace, key)

        def move() -> ObjectInfo:
            if os.path.getsize(src) != length:
                os.truncate(src, length)
                fd = os.open(src, os.O_WRONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            try:
                dst.parent.mkdir(parents=True, exist_ok=True)
                if dst.is_dir():
                    raise PathConflict(f"{key} is a folder")
                os.replace(src, dst)
            except (NotADirectoryError, FileExistsError) as exc:
                raise PathConflict(f"a file stands where a folder of {key} is needed") from exc
            _fsync_dir(dst.parent)
            st = dst.stat()
            return ObjectInfo(namespace, key, st.st_size, st.st_mtime, st.st_mtime_ns)

        return await anyio.to_thread.run_sync(move)

    # -- published objects ------------------------------------------------------------------------
    async def stat(self, namespace: str, key: str) -> ObjectInfo | None:
        try:
            st = self._object_path(namespace, key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not os.path.isfile(self._object_path(namespace, key)):
            return None
        return ObjectInfo(namespace, key, st.st_size, st.st_mtime, st.st_mtime_ns)

    async def is_folder(self, namespace: str, key: str) -> bool:
        return self._object_path(namespace, key).is_dir()

    async def read(self, namespace: str, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        async for piece in self._read_path(self._object_path(namespace, key), start, end):
            yield piece

    async def _read_path(self, path: Path, start: int, end: int) -> AsyncIterator[bytes]:
        fd = os.open(path, os.O_RDONLY)
        try:
            pos = start
            while pos < end:
                piece = await anyio.to_thread.run_sync(os.pread, fd, min(READ_SIZE, end - pos), pos)
                if not piece:
                    break
                pos += len(piece)
                yield piece
        finally:
            os.close(fd)

    async def list_folder(self, namespace: str, prefix: str) -> Listing:
        def scan() -> Listing:
            files: list[ObjectInfo] = []
            folders: list[str] = []
            base = self._object_path(namespace, prefix)
            try:
                entries = sorted(os.scandir(base), key=lambda e: e.name)
            except (FileNotFoundError, NotADirectoryError):
                return Listing([], [])
            for entry in entries:
                key = f"{prefix}/{entry.name}" if prefix else entry.name
                if entry.is_dir(follow_symlinks=False):
                    folders.append(key)
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat()
                    files.append(ObjectInfo(namespace, key, st.st_size, st.st_mtime, st.st_mtime_ns))
            return Listing(files, folders)

        return await anyio.to_thread.run_sync(scan)

    async def walk(self, namespace: str, prefix: str) -> list[ObjectInfo]:
        def scan() -> list[ObjectInfo]:
            base = self._object_path(namespace, prefix)
            out: list[ObjectInfo] = []
            if base.is_file():
                st = base.stat()
                return [ObjectInfo(namespace, prefix, st.st_size, st.st_mtime, st.st_mtime_ns)]
            for dirpath, _dirs, names in os.walk(base):
                rel = os.path.relpath(dirpath, self.objects / namespace)
                for name in sorted(names):
                    key = name if rel == "." else f"{rel}/{name}"
                    st = os.stat(os.path.join(dirpath, name))
                    out.append(ObjectInfo(namespace, key.replace(os.sep, "/"), st.st_size, st.st_mtime,
                                          st.st_mtime_ns))
            return out

        return await anyio.to_thread.run_sync(scan)

    async def delete(self, namespace: str, key: str) -> bool:
        path = self._object_path(namespace, key)

        def remove() -> bool:
            if path.is_dir():
                # rename first so readers never see a half-deleted folder under the old name
                doomed = self.staging / f"deleted-{secrets.token_hex(8)}"
                os.replace(path, doomed)
                shutil.rmtree(doomed, ignore_errors=True)
                _fsync_dir(path.parent)
                return True
            try:
                path.unlink()
            except (FileNotFoundError, NotADirectoryError):
                return False
            _fsync_dir(path.parent)
            return True

        return await anyio.to_thread.run_sync(remove)

    async def copy(self, namespace: str, src: str, dst: str, skip: frozenset[str]) -> int:
        src_path = self._object_path(namespace, src)
        dst_path = self._object_path(namespace, dst)

        def copy_one(s: Path, d: Path) -> None:
            d.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.staging / f"copy-{secrets.token_hex(8)}.part"
            shutil.copyfile(s, tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, d)

        def run() -> int:
            if src_path.is_file():
                copy_one(src_path, dst_path)
                return 1
            if not src_path.is_dir():
                raise FileNotFoundError(src)
            count = 0
            for dirpath, _dirs, names in os.walk(src_path):
                rel = os.path.relpath(dirpath, src_path)
                for name in names:
                    if name in skip:
                        continue
                    target = dst_path / rel / name if rel != "." else dst_path / name
                    copy_one(Path(dirpath) / name, target)
                    count += 1
            return count

        return await anyio.to_thread.run_sync(run)

    async def usage(self) -> dict[str, int]:
        def run() -> dict[str, int]:
            du = shutil.disk_usage(self.root)
            staged = [e for e in os.scandir(self.staging) if e.is_file()]
            return {
                "capacity": du.total,
                "available": du.free,
                "staged_bytes": sum(e.stat().st_blocks * 512 for e in staged),
                "staged_files": len(staged),
            }

        return await anyio.to_thread.run_sync(run)
