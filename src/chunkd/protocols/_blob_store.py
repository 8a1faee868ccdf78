"""Blob containers as the blob and Industry Data front ends share them: containers and blobs kept as engine
resources, bytes as engine objects and sessions. No HTTP here.

Resources (all tenant-scoped by the container's tenant):

* ``blobcontainer`` ``{containerId}``: ``state`` (``open`` | ``validated`` | ``discarded``), ``owner``
  (e.g. the data connector id), ``sessionExpires`` / ``containerExpires`` (epoch seconds), ``etag``.
* ``blob`` ``{containerId}:{sha256(name)}``, parent = container: ``name``, ``object`` (engine key),
  ``size``, ``etag``, content headers, ``md5``, ``meta`` (x-ms-meta-*), ``blocks`` (committed list).

Resource ids are hashes because blob names (up to 1024 characters) exceed the id column; listings are sorted
by name in memory, which is fine for upload containers of a few thousand blobs.

Bytes: each blob version is the object ``blob/{containerId}/{random}`` (never the blob name, so any name
works and an overwrite never exposes a half-written blob). The uncommitted blocks of a blob are the
pieces of one core session per blob (``block_session_id``), each labelled with its block id and stored at
a fresh offset (:meth:`Engine.write_allocated`: a Put Block is one claim and one record transaction, and
parallel Put Blocks never wait for each other); Put Block List publishes the listed pieces in list order
(:meth:`Engine.publish_pieces` -- no copy on local storage) and ends that session, as Azure discards a
blob's uncommitted blocks. Block sessions live a week after their last Put Block, as Azure keeps
uncommitted blocks.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from chunkd.core import errors
from chunkd.core.body import Body
from chunkd.core.engine import Engine
from chunkd.core.models import Piece, Session, SessionState
from chunkd.core.principal import Principal
from chunkd.core.resources import Resource
from chunkd.core.store import Guard

NAMESPACE = "blob"
FAMILY = "blobblock"
K_CONTAINER, K_BLOB = "blobcontainer", "blob"
OPEN, VALIDATED, DISCARDED = "open", "validated", "discarded"


class BlobError(Exception):
    """An Azure Blob error: HTTP status, ``x-ms-error-code`` and message."""

    def __init__(self, status: int, code: str, message: str, **extra: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def container_not_found() -> BlobError:
    return BlobError(404, "ContainerNotFound", "The specified container does not exist.")


def finalised() -> BlobError:
    return BlobError(403, "AuthorizationFailure", "This request is not authorized to perform this operation.",
                     Reason="the upload session was finalised by validate; request a new upload session")


def blob_not_found() -> BlobError:
    return BlobError(404, "BlobNotFound", "The specified blob does not exist.")


def new_etag() -> str:
    return "0x8D" + secrets.token_hex(7).upper()[:13]


def _h(text: str, n: int = 64) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:n]


def blob_id(container: str, name: str) -> str:
    return f"{container}:{_h(name)}"


def block_session_id(container: str, name: str) -> str:
    """The core session holding the uncommitted blocks of one blob."""
    return "blk-" + _h(f"{container}\0{name}", 60)


def block_principal(container: str) -> Principal:
    """The owner of a container's block sessions (SAS requests have no user)."""
    return Principal(kind="app", app=f"blobcontainer:{container}")


BLOCK_TTL = 7 * 24 * 3600.0  # Azure collects uncommitted blocks a week after the last Put Block
_COPY_TAG = ":"  # tags of committed blocks copied for a Put Block List; block ids are base64, never ':'


@dataclass
class Conditions:
    """Conditional headers of a request (If-Match / If-None-Match)."""

    if_match: str = ""
    if_none_match: str = ""

    def check_write(self, existing: Resource | None) -> None:
        etag = existing.data["etag"] if existing else None
        if self.if_none_match == "*" and existing is not None:
            raise BlobError(409, "BlobAlreadyExists", "The specified blob already exists.")
        if self.if_none_match and self.if_none_match != "*" and etag is not None \
                and _etag_in(etag, self.if_none_match):
            raise BlobError(412, "ConditionNotMet", "The condition specified using HTTP conditional header(s) "
                            "is not met.")
        if self.if_match and (etag is None or not (self.if_match.strip() == "*" or _etag_in(etag, self.if_match))):
            if etag is None:
                raise blob_not_found()
            raise BlobError(412, "ConditionNotMet", "The condition specified using HTTP conditional header(s) "
                            "is not met.")


def _etag_in(etag: str, header: str) -> bool:
    return etag in {t.strip().strip('"') for t in header.split(",")}


@dataclass
class BlobProps:
    """Settable blob properties: content headers and user metadata."""

    content_type: str = "application/octet-stream"
    content_encoding: str = ""
    content_language: str = ""
    content_disposition: str = ""
    cache_control: str = ""
    md5: str = ""  # base64, as Content-MD5
    meta: dict[str, str] = field(default_factory=dict)

    def as_data(self) -> dict[str, Any]:
        return {"contentType": self.content_type, "contentEncoding": self.content_encoding,
                "contentLanguage": self.content_language, "contentDisposition": self.content_disposition,
                "cacheControl": self.cache_control, "md5": self.md5, "meta": dict(self.meta)}


class BlobStore:
    """Containers, blobs and blocks over one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- containers --------------------------------------------------------------------------------
    async def create_container(self, principal: Principal, owner: str, session_ttl: float,
                               container_ttl: float) -> Resource:
        now = float(int(time.time()))  # whole seconds: the SAS's se has no fraction
        cid = str(uuid.uuid4())
        data = {"state": OPEN, "owner": owner, "sessionExpires": now + session_ttl,
                "containerExpires": now + container_ttl, "etag": new_etag()}
        return await self.engine.create_resource(K_CONTAINER, cid, principal, data, parent=owner)

    async def container(self, cid: str) -> Resource | None:
        """The container if it exists, is not discarded and has not expired (an expired one is discarded)."""
        res = await self.engine.get_resource(K_CONTAINER, cid)
        if res is None or res.data.get("state") == DISCARDED:
            return None
        if res.data.get("containerExpires", 0) < time.time():
            await self.discard(cid)
            return None
        return res

    async def sweep_owner(self, owner: str) -> int:
        """Discard the expired containers of one owner (a connector); how many. Expiry is otherwise noticed
        lazily, when a request touches the container."""
        count = 0
        for res in await self.engine.list_resources(K_CONTAINER, parent=owner):
            if res.data.get("state") != DISCARDED and float(res.data.get("containerExpires", 0)) < time.time():
                await self.discard(res.id)
                count += 1
        return count

    async def set_state(self, cid: str, state: str) -> Resource | None:
        for _ in range(20):
            res = await self.engine.get_resource(K_CONTAINER, cid)
            if res is None:
                return None
            try:
                return await self.engine.update_resource(res, {**res.data, "state": state})
            except errors.Conflict:
                await anyio.sleep(0.01)
        raise errors.Conflict("the container is changing too fast")

    async def discard(self, cid: str) -> None:
        """Mark the container discarded and delete its blobs, staged blocks and bytes. Idempotent."""
        await self.set_state(cid, DISCARDED)
        for session in await self._block_sessions(cid):
            await self._drop_blocks(cid, session.id)
        for res in await self._all(K_BLOB, cid):
            await self.engine.delete_resource(K_BLOB, res.id)
        await self.engine.delete_object(NAMESPACE, cid)
        await self.engine.delete_resource(K_CONTAINER, cid)  # old SAS URLs now meet ContainerNotFound

    def principal(self, container: Resource) -> Principal:
        """The owner of the container's block sessions (SAS requests have no user)."""
        return Principal(kind="app", tenant=container.tenant, app=f"blobcontainer:{container.id}")

    async def _all(self, kind: str, cid: str, after: str = "") -> list[Resource]:
        out: list[Resource] = []
        while True:
            page = await self.engine.list_resources(kind, parent=cid, after=after, limit=1000)
            out += page
            if len(page) < 1000:
                return out
            after = page[-1].id

    # -- blobs -------------------------------------------------------------------------------------
    async def get_blob(self, cid: str, name: str) -> Resource | None:
        return await self.engine.get_resource(K_BLOB, blob_id(cid, name))

    async def list_blobs(self, cid: str) -> list[Resource]:
        """Every committed blob of the container, sorted by name (UTF-8 byte order, as Azure sorts)."""
        return sorted(await self._all(K_BLOB, cid), key=lambda r: str(r.data["name"]).encode("utf-8", "replace"))

    async def _block_sessions(self, cid: str) -> list[Session]:
        out: list[Session] = []
        after = ""
        while True:
            page = await self.engine.list_sessions(owner=block_principal(cid).key, family=FAMILY, after=after,
                                                   limit=1000)
            out += page
            if len(page) < 1000:
                return out
            after = page[-1].id

    async def uncommitted_names(self, cid: str) -> set[str]:
        names: set[str] = set()
        for session in await self._block_sessions(cid):
            if session.state is SessionState.OPEN and await self.engine.pieces(session):
                names.add(str(session.extra.get("blob", "")))
        return names

    def read(self, blob: Resource, start: int, end: int) -> AsyncIterator[bytes]:
        return self.engine.read_object(NAMESPACE, blob.data["object"], start, end)

    async def put_blob(self, container: Resource, name: str, body: Body, props: BlobProps, cond: Conditions,
                       digest: Callable[[], str] | None = None) -> Resource:
        """Single-shot upload; the body must already be length- and digest-checked by the caller's wrapper.
        ``digest`` gives the body's base64 MD5 once it has been read (stored unless the client set one)."""
        cond.check_write(await self.get_blob(container.id, name))
        key = f"{container.id}/{uuid.uuid4().hex}"
        info = await self.engine.put_object(NAMESPACE, key, body)
        if digest is not None and not props.md5:
            props.md5 = digest()
        blob = await self._install(container, name, key, info.size, props, [], cond)
        await self._drop_blocks(container.id, block_session_id(container.id, name))  # Put Blob discards staged blocks
        return blob

    async def _install(self, container: Resource, name: str, key: str, size: int, props: BlobProps,
                       blocks: list[list[Any]], cond: Conditions) -> Resource:
        """Point the blob at a newly published object (compare-and-set), then drop what it replaced.

        The container must be open just before the switch, and still open (or finalised only after the switch)
        just after it; otherwise the switch is undone -- the previous version comes back -- and the write is
        refused, so a reset or validate never races with a write into keeping half of it.
        """
        now = time.time()
        data: dict[str, Any] = {"name": name, "object": key, "size": size, "etag": new_etag(), "modified": now,
                                "created": now, "blocks": blocks, **props.as_data()}
        try:
            for _ in range(50):
                existing = await self.get_blob(container.id, name)
                cond.check_write(existing)
                await self.check_writable(container.id)
                try:
                    if existing is None:
                        res = await self.engine.create_resource(K_BLOB, blob_id(container.id, name),
                                                                self.principal(container), data, parent=container.id)
                    else:
                        data["created"] = existing.data.get("created", now)
                        res = await self.engine.update_resource(existing, data)
                except (errors.AlreadyExists, errors.Conflict):
                    await anyio.sleep(0.005)
                    continue
                break
            else:
                raise errors.Conflict("the blob is changing too fast")
            try:
                await self.check_writable(container.id, res)
            except BlobError:
                with anyio.CancelScope(shield=True):
                    await self._undo(res, existing)
                raise
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.engine.delete_object(NAMESPACE, key)
            raise
        if existing is not None:
            await self.engine.delete_object(NAMESPACE, existing.data["object"])
        return res

    async def set_properties(self, container: Resource, name: str, change: Callable[[dict[str, Any]], dict[str, Any]],
                             cond: Conditions) -> Resource:
        """Set Blob Metadata / Properties: the blob's data becomes ``change(data)`` with a new ETag, same bytes
        (compare-and-set; checked against reset and validate like any write, see ``_install``)."""
        for _ in range(50):
            existing = await self.get_blob(container.id, name)
            if existing is None:
                raise blob_not_found()
            cond.check_write(existing)
            await self.check_writable(container.id)
            try:
                res = await self.engine.update_resource(existing, {**change(dict(existing.data)), "etag": new_etag(),
                                                                   "modified": time.time()})
                break
            except (errors.Conflict, errors.NotFound):
                await anyio.sleep(0.005)
        else:
            raise errors.Conflict("the blob is changing too fast")
        try:
            await self.check_writable(container.id, res)
        except BlobError:
            with anyio.CancelScope(shield=True):
                await self._undo(res, existing)
            raise
        return res

    async def _undo(self, installed: Resource, previous: Resource | None) -> None:
        try:
            if previous is None:
                await self.engine.delete_resource(K_BLOB, installed.id)
            else:
                await self.engine.update_resource(installed, previous.data)
        except (errors.Conflict, errors.NotFound):
            pass  # someone else changed it meanwhile; theirs stands

    async def check_writable(self, cid: str, blob: Resource | None = None) -> None:
        """Raise unless the container accepts writes: 404 when it is gone or discarded, 403 once validated.

        With ``blob`` (a version just installed) a validated container keeps it exactly when validate's
        recorded set has this version -- validate lists the container after sealing it, and a write that
        committed before that listing is part of it. Waits briefly for validate to record its set.
        """
        current = await self.engine.get_resource(K_CONTAINER, cid)
        deadline = time.monotonic() + 10.0
        while True:
            state = current.data.get("state") if current else None
            if current is None or state == DISCARDED:
                raise container_not_found()
            if state == OPEN:
                return
            if blob is None:
                raise finalised()
            recorded = current.data.get("validated")
            if isinstance(recorded, dict):
                if recorded.get(str(blob.data["name"])) == blob.data["etag"]:
                    return
                raise finalised()
            if time.monotonic() > deadline:
                raise finalised()
            await anyio.sleep(0.02)
            current = await self.engine.get_resource(K_CONTAINER, cid)

    async def seal(self, cid: str) -> list[Resource]:
        """Finalise the container for validate: no write is accepted from now on, and the blobs listed here
        (recorded as the validated set, name -> etag) are exactly the ones writers keep."""
        await self.set_state(cid, VALIDATED)
        blobs = await self.list_blobs(cid)
        recorded = {str(b.data["name"]): b.data["etag"] for b in blobs}
        for _ in range(50):
            res = await self.engine.get_resource(K_CONTAINER, cid)
            if res is None:
                raise container_not_found()
            try:
                await self.engine.update_resource(res, {**res.data, "validated": recorded})
                return blobs
            except errors.Conflict:
                await anyio.sleep(0.01)
        raise errors.Conflict("the container is changing too fast")

    async def delete_blob(self, cid: str, name: str) -> bool:
        blob = await self.get_blob(cid, name)
        had_blocks = bool(await self.blocks(cid, name))
        await self._drop_blocks(cid, block_session_id(cid, name))
        if blob is None:
            return had_blocks
        await self.engine.delete_resource(K_BLOB, blob.id)
        await self.engine.delete_object(NAMESPACE, blob.data["object"])
        return True

    # -- blocks ------------------------------------------------------------------------------------
    async def blocks(self, cid: str, name: str) -> dict[str, Piece]:
        """Uncommitted blocks of one blob: block id -> its latest piece, in staging order."""
        try:
            session = await self.engine.get_session(block_session_id(cid, name))
        except (errors.SessionNotFound, errors.SessionGone):
            return {}
        if session.state is not SessionState.OPEN:
            return {}
        latest: dict[str, Piece] = {}
        for piece in await self.engine.pieces(session):  # ordered by start: later stagings win
            if not piece.tag.startswith(_COPY_TAG):
                latest.pop(piece.tag, None)
                latest[piece.tag] = piece
        return latest

    async def stage_block(self, cid: str, name: str, block_id: str, length: int, body: Body) -> None:
        """Put Block: store the block as a new piece of the blob's block session, in one claim and one
        record transaction; the container must be open when claiming and when recording."""
        principal = block_principal(cid)
        sid = block_session_id(cid, name)
        create = self.engine.new_session(principal, FAMILY, NAMESPACE, f"{cid}/blocks/{_h(name, 40)}", None,
                                         session_id=sid, ttl=BLOCK_TTL, extra={"blob": name, "idlen": len(block_id)})

        def same_id_length(session: Session) -> None:
            if session.extra.get("idlen", len(block_id)) != len(block_id):
                raise BlobError(400, "InvalidBlobOrBlock", "The specified blob or block content is invalid.",
                                Reason="all block ids of a blob must have the same length")

        try:
            await self.engine.write_allocated(sid, principal, length, body, tag=block_id, create=create,
                                              guard=Guard(K_CONTAINER, cid, "state", OPEN), check=same_id_length)
        except errors.GuardFailed as exc:
            raise finalised() if exc.state == VALIDATED else container_not_found() from exc

    async def commit_blocks(self, container: Resource, name: str, wanted: list[tuple[str, str]], props: BlobProps,
                            cond: Conditions) -> Resource:
        """Put Block List: ``wanted`` is ``[(Latest|Committed|Uncommitted, blockId)]`` in blob order."""
        existing = await self.get_blob(container.id, name)
        cond.check_write(existing)
        staged = await self.blocks(container.id, name)
        committed: dict[str, tuple[int, int]] = {}  # id -> (offset, size) in the current blob
        offset = 0
        for bid, size in (existing.data.get("blocks", []) if existing else []):
            committed.setdefault(bid, (offset, size))
            offset += size
        chosen: list[Piece] = []
        blocks: list[list[Any]] = []
        for kind, bid in wanted:
            if kind in ("Latest", "Uncommitted") and bid in staged:
                chosen.append(staged[bid])
                blocks.append([bid, staged[bid].size])
            elif kind in ("Latest", "Committed") and bid in committed and existing is not None:
                start, size = committed[bid]
                chosen.append(await self._copy_range(container.id, name, existing, start, size, bid))
                blocks.append([bid, size])
            else:
                raise BlobError(400, "InvalidBlockList", "The specified block list is invalid.")
        key = f"{container.id}/{uuid.uuid4().hex}"
        if chosen:
            session = await self.engine.get_session(block_session_id(container.id, name))
            size = (await self.engine.publish_pieces(session, chosen, NAMESPACE, key)).size
        else:
            size = (await self.engine.put_object(NAMESPACE, key, _empty())).size
            await self._drop_blocks(container.id, block_session_id(container.id, name))
        blob = await self._install(container, name, key, size, props, blocks, cond)
        if blocks:  # the next blocks of this blob must keep the committed ids' length
            try:
                await self.engine.create_session(
                    block_principal(container.id), FAMILY, NAMESPACE, f"{container.id}/blocks/{_h(name, 40)}", None,
                    session_id=block_session_id(container.id, name), ttl=BLOCK_TTL,
                    extra={"blob": name, "idlen": len(str(blocks[0][0]))})
            except errors.SessionConflict:
                pass  # a Put Block of the next round created it first
        return blob

    async def _copy_range(self, cid: str, name: str, blob: Resource, start: int, size: int, bid: str) -> Piece:
        """A committed block listed again: its bytes, read from the current blob, as a piece of the block
        session (the store cannot refer to part of a published object)."""
        principal = block_principal(cid)
        sid = block_session_id(cid, name)
        create = self.engine.new_session(principal, FAMILY, NAMESPACE, f"{cid}/blocks/{_h(name, 40)}", None,
                                         session_id=sid, ttl=BLOCK_TTL, extra={"blob": name, "idlen": len(bid)})
        result = await self.engine.write_allocated(sid, principal, size, self.read(blob, start, start + size),
                                                   tag=_COPY_TAG + bid, create=create)
        return result.pieces[0]

    async def _drop_blocks(self, cid: str, session_id: str) -> None:
        """Discard a blob's uncommitted blocks (its block session), if it has any."""
        try:
            session = await self.engine.get_session(session_id)
        except (errors.SessionNotFound, errors.SessionGone):
            return
        if session.state is SessionState.OPEN:
            try:
                await self.engine.delete_session(session_id, block_principal(cid))
            except (errors.SessionNotFound, errors.SessionGone, errors.PermissionDenied, errors.Conflict):
                pass


async def _empty() -> Body:
    return
    yield b""  # pragma: no cover
