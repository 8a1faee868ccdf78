"""The Service Fabric image store: upload sessions of files (opened by their first chunk), content
listings with paging, folder sizes, copies (with ``CheckMarkFile`` and ``SkipFiles``), deletes, and the
store's usage figures -- the rules of the image store over the core engine, without HTTP.

Files are objects of namespace ``imagestore`` whose keys are normalised ``/``-separated paths (the
front end turns a contentPath into a key); upload sessions are sessions of family ``servicefabric``.
Folder operations need the byte store's ``folders`` capability and usage figures its ``usage``
capability (:attr:`Engine.capabilities`); without them the store has only files, and reports zeros.

Errors: :class:`ImageStoreFault` for the image store's own refusals (a runtime error code and a
message; the front end maps codes to statuses), core errors otherwise (ObjectNotFound for a missing
file or folder, SessionNotFound, PermissionDenied, ...). Every operation either did what it says or
changed nothing, except a folder copy or delete interrupted half-way (the runtime's too).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from chunkd.core import errors
from chunkd.core.body import Body
from chunkd.core.engine import Engine
from chunkd.core.models import ObjectInfo, Session, SessionState
from chunkd.core.principal import Principal
from chunkd.core.ranges import Range

__all__ = ["FAMILY", "NAMESPACE", "PAGE_SIZE", "ContentPage", "CopyRequest", "FaultCode", "ImageStore",
           "ImageStoreFault", "StoreFolder", "StoreInfo", "UploadSession", "store_path"]

NAMESPACE = "imagestore"
FAMILY = "servicefabric"
PAGE_SIZE = 1000  # entries of a content listing per page
MARK_FILE = "_.dir"  # a folder is complete (copyable with CheckMarkFile) once it holds this file
RESERVED_ROOTS = ("store", "windowsfabricstore")  # the runtime's own folders, any case


class FaultCode(enum.StrEnum):
    """The image store's own refusals, by the runtime's codes."""

    INVALID_ARGUMENT = "E_INVALIDARG"
    INVALID_DIRECTORY = "FABRIC_E_INVALID_DIRECTORY"
    RESERVED_DIRECTORY = "FABRIC_E_IMAGEBUILDER_RESERVED_DIRECTORY_ERROR"


class ImageStoreFault(Exception):
    """A refusal by the image store's rules: a :class:`FaultCode` and a message, no HTTP status."""

    def __init__(self, code: FaultCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def store_path(key: str) -> str:
    """A key as the image store writes paths (``pkgs\\tool.zip``)."""
    return key.replace("/", "\\")


@dataclass(frozen=True)
class UploadSession:
    """An upload session with the ranges ``[start, end)`` it still expects, in order."""

    session: Session
    missing: tuple[Range, ...]


@dataclass(frozen=True)
class StoreFolder:
    key: str
    file_count: int  # files anywhere below the folder


@dataclass(frozen=True)
class ContentPage:
    """One page of a content listing: immediate children in name order (or the one file a path names),
    and the continuation marker of the next page ("" on the last)."""

    files: tuple[ObjectInfo, ...]
    folders: tuple[StoreFolder, ...]
    continuation: str = ""


@dataclass(frozen=True)
class CopyRequest:
    """An ImageStoreCopyDescription, its paths already keys."""

    source: str
    destination: str
    skip_files: frozenset[str] = frozenset()  # file names (not paths) left out of a folder copy
    check_mark_file: bool = False  # copy a folder only once it holds MARK_FILE


@dataclass(frozen=True)
class StoreInfo:
    """The store's usage figures (zeros where the byte store reports none)."""

    capacity: int
    available: int
    staged_bytes: int
    staged_files: int
    copied_bytes: int  # published files
    copied_files: int


class ImageStore:
    """The image store's operations over an engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- upload sessions --------------------------------------------------------------------------
    async def upload_chunk(self, principal: Principal, session_id: str, key: str, start: int, end: int,
                           total: int, body: Body) -> None:
        """Store bytes ``[start, end)`` of the file ``key`` of ``total`` bytes from ``body``; the first
        chunk opens the session, in the same metadata transaction that claims its range (a chunk costs two
        transactions). Bytes already received are not rewritten. Raises SessionConflict for an id in use for
        another path, LengthMismatch for another total or a body of the wrong length, PermissionDenied for
        another owner's session, RangeBusy while another request writes the range."""
        create = self.engine.new_session(principal, FAMILY, NAMESPACE, key, total, session_id=session_id)
        await self.engine.write_range(session_id, principal, start, end, body, create=create)

    async def sessions_for(self, key: str) -> list[UploadSession]:
        """Every live upload session of the file ``key`` (any owner), oldest first."""
        found = await self.engine.sessions_for_target(NAMESPACE, key)
        return [await self._with_missing(s) for s in found if s.family == FAMILY]

    async def session(self, session_id: str) -> UploadSession:
        """The upload session ``session_id`` (any owner); SessionNotFound / SessionGone."""
        return await self._with_missing(await self._get(session_id))

    async def _get(self, session_id: str, principal: Principal | None = None) -> Session:
        session = await self.engine.get_session(session_id, principal=principal)
        if session.family != FAMILY:
            raise errors.SessionNotFound()
        return session

    async def _with_missing(self, session: Session) -> UploadSession:
        return UploadSession(session, tuple(await self.engine.missing(session)))

    async def commit(self, session_id: str, principal: Principal) -> Session:
        """Publish the complete session's file, atomically, replacing any file of that path; committing a
        committed session again is a no-op. Raises ImageStoreFault INVALID_ARGUMENT for an unknown, deleted
        or expired session, INVALID_DIRECTORY when the path is a folder or lies below a file (the session
        stays open), SessionIncomplete while ranges are missing, PermissionDenied for another owner."""
        try:
            session = await self._get(session_id, principal)
            if session.state is SessionState.OPEN:
                await self._check_file_target(session.key)
            return await self.engine.commit(session_id, principal)
        except (errors.SessionNotFound, errors.SessionGone) as exc:
            raise ImageStoreFault(FaultCode.INVALID_ARGUMENT, "no upload session with this id") from exc

    async def _check_file_target(self, key: str) -> None:
        """Refuse a commit onto a folder, or below a file, before the session starts committing (a
        commit that fails half-way would leave the session stuck in ``committing``)."""
        parts = key.split("/")
        conflict = await self.engine.is_folder(NAMESPACE, key)
        for i in range(1, len(parts)):
            if conflict:
                break
            conflict = await self._file(key="/".join(parts[:i])) is not None
        if conflict:
            raise ImageStoreFault(FaultCode.INVALID_DIRECTORY,
                                  f"{store_path(key)} is a folder, or lies below a file, in the image store")

    async def delete_session(self, session_id: str, principal: Principal) -> None:
        """Cancel an upload session (a committed file stays); SessionNotFound / SessionGone,
        PermissionDenied for another owner."""
        await self.engine.delete_session(session_id, principal)

    # -- content ----------------------------------------------------------------------------------
    async def upload_file(self, key: str, body: Body) -> None:
        """Store a whole file from ``body``, durably, replacing any file of that path atomically."""
        await self.engine.put_object(NAMESPACE, key, body)

    async def file(self, key: str) -> ObjectInfo:
        """The file ``key``; ObjectNotFound."""
        return await self.engine.stat_object(NAMESPACE, key)

    async def _file(self, key: str) -> ObjectInfo | None:
        try:
            return await self.engine.stat_object(NAMESPACE, key)
        except errors.ObjectNotFound:
            return None

    async def content(self, key: str, continuation: str = "") -> ContentPage:
        """The file ``key`` itself, or one page of the immediate children of folder ``key`` ("" is the
        root) in name order, ``PAGE_SIZE`` entries, starting after ``continuation``. An empty folder is an
        empty page; ObjectNotFound when nothing is at ``key``."""
        if key:
            info = await self._file(key)
            if info is not None:
                return ContentPage(files=(info,), folders=())
            if not await self.engine.is_folder(NAMESPACE, key):
                raise errors.ObjectNotFound(f"{store_path(key)} does not exist in the image store")
        listing = await self.engine.list_folder(NAMESPACE, key)
        entries: list[tuple[str, ObjectInfo | None]] = [(f, None) for f in listing.folders]
        entries += [(i.key, i) for i in listing.files]
        entries.sort(key=lambda e: e[0])
        if continuation:
            entries = [e for e in entries if e[0] > continuation]
        page, more = entries[:PAGE_SIZE], len(entries) > PAGE_SIZE
        folders = [StoreFolder(name, len(await self.engine.walk(NAMESPACE, name))) for name, info in page
                   if info is None]
        files = [info for _, info in page if info is not None]
        return ContentPage(tuple(files), tuple(folders), page[-1][0] if more else "")

    async def delete(self, key: str) -> None:
        """Delete a file, or a folder recursively; nothing there is fine. ImageStoreFault
        RESERVED_DIRECTORY for the runtime's own folders and everything below them."""
        _reject_reserved(key)
        await self.engine.delete_object(NAMESPACE, key)

    async def copy(self, request: CopyRequest) -> int:
        """Copy a file or a folder (recursively, skipping ``skip_files``) onto ``destination``, replacing
        what is there; how many files were copied. With ``check_mark_file`` a folder without
        :data:`MARK_FILE` is not copied (0). Raises ObjectNotFound for a missing source, InvalidPath for a
        folder copied into itself, ImageStoreFault RESERVED_DIRECTORY for a reserved destination."""
        _reject_reserved(request.destination)
        if request.check_mark_file and await self.engine.is_folder(NAMESPACE, request.source) \
                and await self._file(f"{request.source}/{MARK_FILE}") is None:
            return 0  # the source folder is not marked complete yet: nothing is copied
        return await self.engine.copy_object(NAMESPACE, request.source, request.destination, request.skip_files)

    async def folder_size(self, key: str) -> int:
        """Bytes of the files below folder ``key`` ("" is the root); ObjectNotFound for a missing folder."""
        if key and not await self.engine.is_folder(NAMESPACE, key):
            raise errors.ObjectNotFound(f"{store_path(key)} is not a folder in the image store")
        return sum(f.size for f in await self.engine.walk(NAMESPACE, key))

    async def info(self) -> StoreInfo:
        """Capacity and use: the byte store's figures where it has the ``usage`` capability, and the
        published files."""
        usage = await self.engine.usage() if self.engine.capabilities.usage else None
        files = await self.engine.walk(NAMESPACE, "")
        copied = (sum(f.size for f in files), len(files))
        if usage is None:
            return StoreInfo(0, 0, 0, 0, *copied)
        return StoreInfo(usage.capacity, usage.available, usage.staged_bytes, usage.staged_files, *copied)


def _reject_reserved(key: str) -> None:
    if key.split("/", 1)[0].lower() in RESERVED_ROOTS:
        raise ImageStoreFault(FaultCode.RESERVED_DIRECTORY, "Store and WindowsFabricStore are reserved by the "
                              "image store")
