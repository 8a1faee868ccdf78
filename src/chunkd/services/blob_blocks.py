"""Uncommitted blocks of Azure-Blob-style blobs: Put Block, the staged block list, and publishing a block
list as a new blob object.

The uncommitted blocks of a blob are the pieces of one core session per blob
(:func:`~chunkd.services.blob_model.block_session_id`), each labelled with its block id and stored at a
fresh offset (:meth:`Engine.write_allocated`): a Put Block is one claim and one record transaction, and
parallel Put Blocks never wait for each other. Publishing a block list assembles the listed pieces in list
order (:meth:`Engine.publish_pieces`, no copy on local storage) and ends that session, as Azure discards a
blob's uncommitted blocks. Block sessions live a week after their last Put Block, as Azure keeps
uncommitted blocks.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from chunkd.core import errors
from chunkd.core.body import Body
from chunkd.core.engine import Engine
from chunkd.core.models import Piece, Session, SessionState
from chunkd.core.store import Guard
from chunkd.services.blob_model import (
    FAMILY,
    K_CONTAINER,
    NAMESPACE,
    Blob,
    BlobFault,
    ContainerState,
    FaultCode,
    block_principal,
    block_session_id,
    container_not_found,
    finalised,
    name_hash,
)

BLOCK_TTL = 7 * 24 * 3600.0  # Azure collects uncommitted blocks a week after the last Put Block
_COPY_TAG = ":"  # tags of committed blocks copied for a Put Block List; block ids are base64, never ':'
LATEST, COMMITTED, UNCOMMITTED = "Latest", "Committed", "Uncommitted"


@dataclass(frozen=True)
class Published:
    """A block list published as a new object: its key in :data:`NAMESPACE`, size, and block list."""

    key: str
    size: int
    blocks: tuple[tuple[str, int], ...]


def _key(cid: str, name: str) -> str:
    return f"{cid}/blocks/{name_hash(name, 40)}"


class BlockService:
    """Staged blocks over one engine. Every method is safe to race from several processes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _new_session(self, cid: str, name: str, id_length: int) -> Session:
        return self.engine.new_session(block_principal(cid), FAMILY, NAMESPACE, _key(cid, name), None,
                                       session_id=block_session_id(cid, name), ttl=BLOCK_TTL,
                                       extra={"blob": name, "idlen": id_length})

    async def stage(self, cid: str, name: str, block_id: str, length: int, body: Body) -> None:
        """Put Block: store ``body`` (exactly ``length`` bytes) as block ``block_id`` of blob ``name``.

        Two metadata transactions in all, and no container read: the claim (which creates the block session
        on a blob's first block) and the record each check, through a :class:`Guard`, that the container is
        open. Raises BlobFault ContainerNotFound (gone or discarded) or AuthorizationFailure (validated),
        InvalidBlobOrBlock when the id's length differs from the blob's other block ids; durable when it
        returns. Staging the same id again replaces the block (the latest staging wins)."""
        principal = block_principal(cid)

        def same_id_length(session: Session) -> None:
            if session.extra.get("idlen", len(block_id)) != len(block_id):
                raise BlobFault(FaultCode.INVALID_BLOCK, Reason="all block ids of a blob must have the same length")

        try:
            await self.engine.write_allocated(block_session_id(cid, name), principal, length, body, tag=block_id,
                                              create=self._new_session(cid, name, len(block_id)),
                                              guard=Guard(K_CONTAINER, cid, "state", ContainerState.OPEN.value),
                                              check=same_id_length)
        except errors.GuardFailed as exc:
            raise finalised() if exc.state == ContainerState.VALIDATED else container_not_found() from exc

    async def staged(self, cid: str, name: str) -> dict[str, Piece]:
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

    async def publish(self, cid: str, name: str, current: Blob | None, wanted: Sequence[tuple[str, str]]) -> Published:
        """Publish the block list ``wanted`` (``[(Latest|Committed|Uncommitted, blockId)]`` in blob order) as
        a new object and end the blob's block session; ``current`` is the blob now (its committed blocks may
        be listed again). Raises BlobFault InvalidBlockList for a block that is not there. The caller points
        the blob at the object (or deletes it)."""
        staged = await self.staged(cid, name)
        committed: dict[str, tuple[int, int]] = {}  # id -> (offset, size) in the current blob
        offset = 0
        for bid, size in current.blocks if current else ():
            committed.setdefault(bid, (offset, size))
            offset += size
        chosen: list[Piece] = []
        blocks: list[tuple[str, int]] = []
        for kind, bid in wanted:
            if kind in (LATEST, UNCOMMITTED) and bid in staged:
                chosen.append(staged[bid])
                blocks.append((bid, staged[bid].size))
            elif kind in (LATEST, COMMITTED) and bid in committed and current is not None:
                start, size = committed[bid]
                chosen.append(await self._copy_range(cid, name, current, start, size, bid))
                blocks.append((bid, size))
            else:
                raise BlobFault(FaultCode.INVALID_BLOCK_LIST)
        key = f"{cid}/{uuid.uuid4().hex}"
        if chosen:
            session = await self.engine.get_session(block_session_id(cid, name))
            size = (await self.engine.publish_pieces(session, chosen, NAMESPACE, key)).size
        else:
            size = (await self.engine.put_object(NAMESPACE, key, _empty())).size
            await self.drop(cid, name)
        return Published(key, size, tuple(blocks))

    async def keep_id_length(self, cid: str, name: str, id_length: int) -> None:
        """After a block list is committed: the next blocks of the blob must keep its ids' length (an empty
        block session remembers it)."""
        try:
            await self.engine.create_session(block_principal(cid), FAMILY, NAMESPACE, _key(cid, name), None,
                                             session_id=block_session_id(cid, name), ttl=BLOCK_TTL,
                                             extra={"blob": name, "idlen": id_length})
        except errors.SessionConflict:
            pass  # a Put Block of the next round created it first

    async def _copy_range(self, cid: str, name: str, blob: Blob, start: int, size: int, bid: str) -> Piece:
        """A committed block listed again: its bytes, read from the current blob, as a piece of the block
        session (the store cannot refer to part of a published object)."""
        body = self.engine.read_object(NAMESPACE, blob.object, start, start + size)
        result = await self.engine.write_allocated(block_session_id(cid, name), block_principal(cid), size, body,
                                                   tag=_COPY_TAG + bid, create=self._new_session(cid, name, len(bid)))
        return result.pieces[0]

    async def drop(self, cid: str, name: str) -> bool:
        """Discard a blob's uncommitted blocks (its block session); whether it had any. Idempotent."""
        try:
            session = await self.engine.get_session(block_session_id(cid, name))
        except (errors.SessionNotFound, errors.SessionGone):
            return False
        return await self._drop(cid, session)

    async def _drop(self, cid: str, session: Session) -> bool:
        if session.state is not SessionState.OPEN:
            return False
        try:
            await self.engine.delete_session(session.id, block_principal(cid))
        except (errors.SessionNotFound, errors.SessionGone, errors.PermissionDenied, errors.Conflict):
            return False
        return True

    async def drop_all(self, cid: str) -> None:
        """Discard the uncommitted blocks of every blob of a container."""
        for session in await self._sessions(cid):
            await self._drop(cid, session)

    async def _sessions(self, cid: str) -> list[Session]:
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
        """The names of the container's blobs that have staged blocks."""
        names: set[str] = set()
        for session in await self._sessions(cid):
            if session.state is SessionState.OPEN and await self.engine.pieces(session):
                names.add(str(session.extra.get("blob", "")))
        return names


async def _empty() -> Body:
    return
    yield b""  # pragma: no cover
