"""The directory tree of :class:`chunkd.storage.local.LocalStore`: path checks, placing objects
atomically, composite objects, object info. Layout (under the store's root)::

    staging/<ref>                     one sparse file per session; its pieces are pwrites at their offsets
    objects/<namespace>/<key>         published objects: a hard link of a staged file, or a composite link
    composites/<id>/0, 1, ...         the files a composite object reads from, and its manifest.json
    trash/<id>                        composites replaced or deleted, kept TRASH_GRACE for readers

A composite object (pieces assembled out of order, or from several sessions) is a symbolic link at the
object's path whose text is ``chunkd-composite:<id>:<size>``; it is never followed, only read with
``readlink``, so listings get the size without opening anything. Only chunkd creates symlinks under
``objects/`` (uploads always become regular files), so user content can never be mistaken for one. Its
manifest lists ``[file, offset, length]`` runs in order (old manifests: ``[file, length]`` from 0).
"""

from __future__ import annotations

import json
import os
import stat as stat_mod
from pathlib import Path

from chunkd.core.errors import InvalidPath, PathConflict
from chunkd.core.models import ObjectInfo
from chunkd.storage._local_io import fsync_dir

COMPOSITE_PREFIX = "chunkd-composite:"


class LocalTree:
    """Paths and atomic placement under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.staging = self.root / "staging"
        self.objects = self.root / "objects"
        self.composites = self.root / "composites"
        self.trash = self.root / "trash"
        for d in (self.staging, self.objects, self.composites, self.trash):
            d.mkdir(parents=True, exist_ok=True)

    # -- paths ------------------------------------------------------------------------------------
    def stage_path(self, ref: str) -> Path:
        if "/" in ref or "\\" in ref or ref.startswith(".") or not ref or "\x00" in ref:
            raise InvalidPath("bad staging ref")
        return self.staging / ref

    def namespace_path(self, namespace: str) -> Path:
        segments = namespace.split("/")
        if any(seg in ("", ".", "..") or "\\" in seg or any(ord(c) < 32 for c in seg) for seg in segments):
            raise InvalidPath(f"bad namespace {namespace!r}")
        return self.objects.joinpath(*segments)

    def object_path(self, namespace: str, key: str) -> Path:
        base = self.namespace_path(namespace)
        if key and (key.startswith("/") or any(seg in ("", ".", "..") for seg in key.split("/")) or "\x00" in key):
            raise InvalidPath("bad key")
        path = base / key if key else base
        # Keys are validated by the core; this is defence in depth against symlinked folders or bugs.
        # The last component is never followed (composite objects are symlinks), so check its parent.
        real = Path(os.path.realpath(path.parent)) / path.name
        if not str(real).startswith(str(self.objects) + os.sep):
            raise InvalidPath("path escapes the store")
        return path

    # -- placing ----------------------------------------------------------------------------------
    def makedirs(self, folder: Path) -> None:
        """Create ``folder`` and missing parents durably; PathConflict where a file stands in the way."""
        missing: list[Path] = []
        p = folder
        while (kind := kind_of(p)) != "dir":
            if kind is None and os.path.lexists(p):
                # missing a moment ago, there now: another process may have just created this folder
                kind = kind_of(p) or "other"
                if kind == "dir":
                    break
            if kind is not None:
                raise PathConflict("a file stands where a folder is needed")
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:
                if kind_of(d) != "dir":
                    raise PathConflict("a file stands where a folder is needed") from None
                continue  # created concurrently
            except NotADirectoryError as exc:
                raise PathConflict("a file stands where a folder is needed") from exc
            fsync_dir(d.parent)

    def place(self, src: Path, dst: Path, key: str) -> None:
        """Atomically move ``src`` (a link of a staged file, or a composite link) to object path ``dst``,
        replacing an object there; a composite it replaces goes to the trash."""
        for _ in range(5):
            self.makedirs(dst.parent)
            if kind_of(dst) == "dir":
                raise PathConflict(f"{key} is a folder")
            old = composite_of(dst)
            try:
                os.replace(src, dst)
            except FileNotFoundError:
                if not os.path.lexists(src):
                    raise
                continue  # the parent folder was deleted concurrently: create it again
            except (NotADirectoryError, FileExistsError, IsADirectoryError, OSError) as exc:
                if isinstance(exc, (NotADirectoryError, FileExistsError, IsADirectoryError)) or kind_of(dst) == "dir":
                    raise PathConflict(f"{key} is a folder or lies below a file") from exc
                raise
            if os.path.lexists(src):  # renaming a link onto another link of the same file does nothing
                os.unlink(src)
            fsync_dir(dst.parent)
            if old is not None:
                self.to_trash(old[0])
            return
        raise PathConflict(f"the folder of {key} keeps disappearing")

    def to_trash(self, cid: str) -> None:
        try:
            os.rename(self.composites / cid, self.trash / cid)
        except FileNotFoundError:
            return  # already trashed by another process
        os.utime(self.trash / cid)  # the grace period starts now

    # -- object info ------------------------------------------------------------------------------
    def info(self, namespace: str, key: str, path: Path) -> ObjectInfo | None:
        for _ in range(5):
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                return None
            if stat_mod.S_ISREG(st.st_mode):
                return ObjectInfo(namespace, key, st.st_size, st.st_mtime, st.st_mtime_ns)
            if not stat_mod.S_ISLNK(st.st_mode):
                return None
            comp = composite_of(path)
            if comp is not None:
                return ObjectInfo(namespace, key, comp[1], st.st_mtime, st.st_mtime_ns)
            if not os.path.islink(path):
                continue  # replaced by a regular file between lstat and readlink: look again
            return None  # a symlink chunkd did not make: not an object
        return None

    def composite_dir(self, cid: str) -> Path:
        """The directory of a composite's files (in the trash if it was replaced a moment ago)."""
        cdir = self.composites / cid
        return cdir if cdir.is_dir() else self.trash / cid


def manifest_runs(manifest: dict[str, object]) -> list[tuple[str, int, int]]:
    """``(file, offset, length)`` runs of a manifest, whichever format wrote it."""
    runs: list[tuple[str, int, int]] = []
    for entry in manifest["parts"]:  # type: ignore[attr-defined]
        if len(entry) == 2:
            runs.append((str(entry[0]), 0, int(entry[1])))
        else:
            runs.append((str(entry[0]), int(entry[1]), int(entry[2])))
    return runs


def read_manifest(cdir: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((cdir / "manifest.json").read_bytes())
    return loaded


def kind_of(path: Path) -> str | None:
    """``file``, ``composite``, ``dir`` or None, without following a symlink at ``path``."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat_mod.S_ISDIR(st.st_mode):
        return "dir"
    if stat_mod.S_ISREG(st.st_mode):
        return "file"
    if stat_mod.S_ISLNK(st.st_mode) and composite_of(path) is not None:
        return "composite"
    return None


def open_object(path: Path) -> int | str:
    """Open the object at ``path`` without following a symlink: a read-only fd for a regular file, or the
    id of a composite. FileNotFoundError when there is no object (or a folder). Retries when the object
    is replaced by the other kind between the two looks."""
    for _ in range(5):
        comp = composite_of(path)
        if comp is not None:
            return comp[0]
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise
        except NotADirectoryError as exc:
            raise FileNotFoundError(str(path)) from exc
        except OSError:  # ELOOP: it became a composite's link since the readlink above
            continue
        if stat_mod.S_ISREG(os.fstat(fd).st_mode):
            return fd
        os.close(fd)
        break
    raise FileNotFoundError(str(path))


def composite_of(path: Path) -> tuple[str, int] | None:
    """``(id, size)`` when ``path`` is a composite object's link."""
    try:
        text = os.readlink(path)
    except OSError:  # missing, or not a symlink
        return None
    if not text.startswith(COMPOSITE_PREFIX):
        return None
    cid, _, size = text.removeprefix(COMPOSITE_PREFIX).partition(":")
    if not cid.isalnum() or not size.isdigit():
        return None
    return cid, int(size)
