"""Folder listings, recursive deletes and copies of :class:`chunkd.storage.local.LocalStore`
(the :class:`~chunkd.core.bytestore.Folders` and :class:`~chunkd.core.bytestore.ServerSideCopy`
capabilities)."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import anyio.to_thread

from chunkd.core.models import Listing, ObjectInfo
from chunkd.storage._local_io import READ_SIZE, fsync_dir, full_or_same
from chunkd.storage._local_tree import LocalTree, composite_of, kind_of, manifest_runs, open_object, read_manifest


class LocalFolders(LocalTree):
    def _entries(self, folder: Path, prefix: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            yield (f"{prefix}/{entry.name}" if prefix else entry.name), entry

    def _entry_info(self, namespace: str, key: str, entry: os.DirEntry[str]) -> ObjectInfo | None:
        if entry.is_file(follow_symlinks=False):
            st = entry.stat(follow_symlinks=False)
            return ObjectInfo(namespace, key, st.st_size, st.st_mtime, st.st_mtime_ns)
        if entry.is_symlink():
            return self.info(namespace, key, Path(entry.path))
        return None

    async def list_folder(self, namespace: str, prefix: str) -> Listing:
        def scan() -> Listing:
            files: list[ObjectInfo] = []
            folders: list[str] = []
            base = self.object_path(namespace, prefix)
            if kind_of(base) != "dir":
                return Listing([], [])
            for key, entry in self._entries(base, prefix):
                if entry.is_dir(follow_symlinks=False):
                    folders.append(key)
                    continue
                info = self._entry_info(namespace, key, entry)
                if info is not None:
                    files.append(info)
            return Listing(files, folders)

        return await anyio.to_thread.run_sync(scan)

    def _walk(self, namespace: str, folder: Path, prefix: str, out: list[ObjectInfo]) -> None:
        for key, entry in self._entries(folder, prefix):
            if entry.is_dir(follow_symlinks=False):
                self._walk(namespace, Path(entry.path), key, out)
                continue
            info = self._entry_info(namespace, key, entry)
            if info is not None:
                out.append(info)

    async def walk(self, namespace: str, prefix: str) -> list[ObjectInfo]:
        def scan() -> list[ObjectInfo]:
            base = self.object_path(namespace, prefix)
            if kind_of(base) in ("file", "composite"):
                info = self.info(namespace, prefix, base)
                return [info] if info is not None else []
            out: list[ObjectInfo] = []
            if kind_of(base) == "dir":
                self._walk(namespace, base, prefix, out)
            out.sort(key=lambda o: o.key)  # plain string order ("a-b" before "a/b"), as listings page by key
            return out

        return await anyio.to_thread.run_sync(scan)

    async def is_folder(self, namespace: str, key: str) -> bool:
        return kind_of(self.object_path(namespace, key)) == "dir"

    async def delete_folder(self, namespace: str, prefix: str) -> bool:
        path = self.object_path(namespace, prefix)

        def remove() -> bool:
            if kind_of(path) != "dir":
                return False
            # rename first so readers never see a half-deleted folder under the old name
            doomed = self.staging / f".deleted-{secrets.token_hex(8)}"
            try:
                os.replace(path, doomed)
            except FileNotFoundError:
                return False
            fsync_dir(path.parent)
            found: list[ObjectInfo] = []
            self._walk(namespace, doomed, "", found)
            for info in found:
                comp = composite_of(doomed / info.key)
                if comp is not None:
                    self.to_trash(comp[0])
            shutil.rmtree(doomed, ignore_errors=True)
            return True

        return await anyio.to_thread.run_sync(remove)

    async def copy(self, namespace: str, src: str, dst: str) -> ObjectInfo:
        src_path = self.object_path(namespace, src)
        dst_path = self.object_path(namespace, dst)

        def run() -> ObjectInfo:
            tmp = self.staging / f".copy-{secrets.token_hex(8)}.part"
            try:
                opened = open_object(src_path)  # one look at the source, even if it is replaced meanwhile
                if isinstance(opened, str):
                    self._concat_composite(opened, tmp)
                else:
                    with open(opened, "rb") as src_fh, open(tmp, "wb") as out:
                        shutil.copyfileobj(src_fh, out, READ_SIZE)
                os.chmod(tmp, 0o600)
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
                self.place(tmp, dst_path, dst)
            except OSError as exc:
                if isinstance(exc, FileNotFoundError):
                    raise  # the source went away: the engine says ObjectNotFound
                raise full_or_same(exc) from exc
            finally:
                if os.path.lexists(tmp):
                    os.unlink(tmp)
            info = self.info(namespace, dst, dst_path)
            if info is None:
                raise FileNotFoundError(dst)
            return info

        return await anyio.to_thread.run_sync(run)

    def _concat_composite(self, cid: str, target: Path) -> None:
        cdir = self.composite_dir(cid)
        with open(target, "wb") as out:
            for name, offset, length in manifest_runs(read_manifest(cdir)):
                with open(cdir / name, "rb") as part:
                    part.seek(offset)
                    remaining = length
                    while remaining:
                        chunk = part.read(min(READ_SIZE, remaining))
                        if not chunk:
                            raise OSError(f"composite part {cid}/{name} is shorter than its manifest says")
                        out.write(chunk)
                        remaining -= len(chunk)
