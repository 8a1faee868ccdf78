"""Uploads by the IETF draft "Resumable Uploads for HTTP" (draft-ietf-httpbis-resumable-upload): the draft's
rules over the tus service's sessions.

The draft's upload is a tus upload (family ``tus``, published as ``tus/<id>`` through
:class:`chunkd.services.tus_uploads.TusUploads`), so durability, auth, expiry and events are tus's. What
differs is completion: a tus upload completes when its offset reaches its length, a draft upload only when a
request that says ``Upload-Complete: ?1`` has been received in full. So the session's length is set only then
(or at creation when that request is the complete one); a length announced earlier (``Upload-Length``) is kept
as :attr:`UploadFields.declared_length` and enforced from there: no append may go beyond it and the final
length must equal it. A ``Repr-Digest`` sent on any request is kept the same way
(:attr:`UploadFields.repr_digest`; another value for the same algorithm later is CONFLICTING_DIGEST and changes
nothing), and the engine checks the assembled upload against it when the upload completes: a mismatch cancels
the upload and raises :class:`chunkd.core.digests.DigestMismatch` (the draft: the server should consider the
upload failed and not process it further).

Errors: :class:`DraftFault` for the draft's own refusals (a :class:`DraftCode`, no HTTP status), the tus
service's ``TusFault`` (the maximum size) and core errors otherwise: OffsetMismatch with the real offset,
LengthMismatch for inconsistent lengths. Refused requests change nothing, except that an append keeps the
bytes that arrived before a disconnect.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, replace

import anyio

from chunkd.core import errors
from chunkd.core.body import Body
from chunkd.core.digests import digests_of
from chunkd.core.models import Session
from chunkd.core.principal import Principal
from chunkd.core.store import SessionChanges
from chunkd.services.tus_records import FaultCode, NewUpload, TusFault, Upload
from chunkd.services.tus_uploads import TusUploads

__all__ = ["DraftCode", "DraftFault", "DraftUpload", "DraftUploads", "Limits"]


class DraftCode(enum.StrEnum):
    """The draft's refusals (the problem types' names where the draft defines one)."""

    COMPLETED = "completed-upload"
    INCONSISTENT_LENGTH = "inconsistent-upload-length"
    TOO_SMALL = "below-min-size"  # min-size / min-append-size
    APPEND_TOO_LARGE = "above-max-append-size"
    CONFLICTING_DIGEST = "conflicting-repr-digest"  # a Repr-Digest differing from one an earlier request sent


class DraftFault(Exception):
    """A refusal by the draft's rules: a :class:`DraftCode` and a message."""

    def __init__(self, code: DraftCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


@dataclass(frozen=True)
class Limits:
    """What ``Upload-Limit`` announces and this service enforces. ``max_age`` is the idle lifetime of an
    upload in seconds (tus's expiration); None for the optional ones means no such limit."""

    max_size: int
    max_age: float
    min_size: int | None = None
    max_append_size: int | None = None
    min_append_size: int | None = None


@dataclass(frozen=True)
class DraftUpload:
    """An upload as the draft reports it."""

    upload: Upload

    @property
    def id(self) -> str:
        return self.upload.id

    @property
    def offset(self) -> int:
        return self.upload.session.received

    @property
    def complete(self) -> bool:
        """Marked complete by the client (and so published, or being published)."""
        session = self.upload.session
        return session.length is not None and session.received >= session.length

    @property
    def length(self) -> int | None:
        """The upload's final size when known: set at completion, or announced by ``Upload-Length``."""
        session = self.upload.session
        return session.length if session.length is not None else self.upload.fields.declared_length


Created = Callable[[DraftUpload], Awaitable[None]]


class DraftUploads:
    """The draft's creation, append, offset retrieval and cancellation over :class:`TusUploads`."""

    def __init__(self, uploads: TusUploads, limits: Limits) -> None:
        self.uploads = uploads
        self.limits = limits

    async def create(self, principal: Principal, *, complete: bool, length: int | None, count: int | None,
                     body: Body | None, content_type: str = "", name: str = "",
                     created: Created | None = None, digests: Mapping[str, bytes] | None = None) -> DraftUpload:
        """Create an upload from a creation request: ``complete`` is its Upload-Complete, ``length`` its
        Upload-Length, ``count`` its Content-Length (None: chunked), ``digests`` its Repr-Digest (chunkd
        algorithm -> digest), checked when the upload completes. ``created`` is awaited once the upload
        exists and before the body is read (the front end's 104 with the upload's URL); when the body then
        fails the upload stays, with what was stored of it, for the client to resume.

        Raises DraftFault INCONSISTENT_LENGTH (Upload-Length and a complete Content-Length differ),
        TOO_SMALL (below min-size, or no length known when there is a min-size), TusFault MAX_SIZE_EXCEEDED.
        """
        total = _consistent(length, count if complete else None)
        if total is not None:
            self._check_size(total)
        elif self.limits.min_size:
            raise DraftFault(DraftCode.TOO_SMALL, f"uploads must declare a length of at least {self.limits.min_size}")
        if count is not None and total is not None and count > total:
            raise DraftFault(DraftCode.INCONSISTENT_LENGTH, "the content is longer than Upload-Length")
        text = {k: v for k, v in (("filetype", content_type), ("filename", name)) if v}
        new = NewUpload(total if complete else None, text=text, declared_length=None if complete else total,
                        repr_digest=_encoded(digests or {}))
        upload = DraftUpload(await self.uploads.create(principal, new))
        if created is not None:
            await created(upload)
        if body is None or count == 0:
            if complete and total is None:  # an empty complete upload sent without Content-Length
                return DraftUpload(Upload.of(await self.uploads.set_length(upload.id, principal, 0)))
            return upload
        return await self._write(upload, principal, 0, body, count, complete)

    async def append(self, upload_id: str, principal: Principal, *, offset: int, complete: bool,
                     length: int | None, count: int | None, body: Body,
                     digests: Mapping[str, bytes] | None = None, repeat_ok: bool = False) -> DraftUpload:
        """Append ``body`` at ``offset``; ``complete`` marks the upload complete once the body is in. ``digests``
        (the request's Repr-Digest) are recorded first, for the check at completion. ``repeat_ok``: an empty
        completing append to an upload already complete at ``offset`` is answered with the upload, unchanged
        (for versions whose HEAD cannot tell a client the upload is done; see ``_repeated_completion``).

        Raises DraftFault COMPLETED for an upload already complete, INCONSISTENT_LENGTH when Upload-Length,
        the completing length or the bytes sent disagree with the recorded length, TOO_SMALL /
        APPEND_TOO_LARGE against the append limits, CONFLICTING_DIGEST for a Repr-Digest that differs from
        the recorded one; OffsetMismatch (with the real offset); the engine's append errors (DigestMismatch
        when the completed upload fails its Repr-Digest: it is cancelled then).
        """
        limits = self.limits
        if digests:
            await self._remember(upload_id, principal, digests)
        if count is not None and limits.max_append_size is not None and count > limits.max_append_size:
            raise DraftFault(DraftCode.APPEND_TOO_LARGE, f"appends may carry at most {limits.max_append_size} bytes")
        if not complete and count is not None and limits.min_append_size and count < limits.min_append_size:
            raise DraftFault(DraftCode.TOO_SMALL, f"appends that do not complete the upload must carry at least "
                                                  f"{limits.min_append_size} bytes")
        if not complete and length is None and count is not None:
            # the common case, the engine's hot path: the draft's rules are checked on the session it claims
            return DraftUpload(await self.uploads.append(upload_id, principal, offset, body, count,
                                                         rules=_append_rules(offset, count)))
        upload = await self.get(upload_id, principal)
        if repeat_ok and await _repeated_completion(upload, offset, complete, length, count, body):
            return upload
        _append_rules(offset, 0)(upload.upload.session)
        if offset != upload.offset:
            # checked before anything is recorded: a refused append must not have fixed the length
            raise errors.OffsetMismatch(f"the upload is at offset {upload.offset}, not {offset}", offset=upload.offset)
        known = upload.length
        total = _consistent(length, offset + count if complete and count is not None else None)
        if known is not None and total is not None and known != total:
            raise DraftFault(DraftCode.INCONSISTENT_LENGTH, f"the upload's length is {known}, not {total}")
        if total is not None and known is None:
            self._check_size(total)
            upload = await self._declare(upload, principal, total)
        return await self._write(upload, principal, offset, body, count, complete, limits.max_append_size)

    async def get(self, upload_id: str, principal: Principal) -> DraftUpload:
        return DraftUpload(await self.uploads.get(upload_id, principal))

    async def digest(self, upload: DraftUpload, algorithm: str) -> bytes:
        """The digest of a complete upload's content (``Want-Repr-Digest``), read back from its object."""
        session = upload.upload.session
        content = self.uploads.engine.read_object(session.namespace, session.key, 0, upload.offset)
        return (await digests_of(content, [algorithm]))[algorithm]

    async def cancel(self, upload_id: str, principal: Principal) -> None:
        await self.uploads.terminate(upload_id, principal)

    # -- internals --------------------------------------------------------------------------------
    def _check_size(self, total: int) -> None:
        if total > self.limits.max_size:
            raise TusFault(FaultCode.MAX_SIZE_EXCEEDED, f"the upload is larger than max-size={self.limits.max_size}")
        if self.limits.min_size and total < self.limits.min_size:
            raise DraftFault(DraftCode.TOO_SMALL, f"the upload is smaller than min-size={self.limits.min_size}")

    async def _write(self, upload: DraftUpload, principal: Principal, offset: int, body: Body, count: int | None,
                     complete: bool, append_limit: int | None = None) -> DraftUpload:
        total = upload.length
        cap = total if total is not None else self.limits.max_size
        if count is not None and offset + count > cap:
            if total is None:
                raise TusFault(FaultCode.MAX_SIZE_EXCEEDED, f"the upload would grow beyond max-size={cap}")
            raise DraftFault(DraftCode.INCONSISTENT_LENGTH, f"the content goes beyond the upload's length of {cap}")
        if count is None:
            body = _capped(body, cap - offset, total is not None, append_limit)
        if complete and count is not None:
            return DraftUpload(await self.uploads.append(upload.id, principal, offset, body, count,
                                                         length=offset + count))
        done = DraftUpload(await self.uploads.append(upload.id, principal, offset, body, count))
        if not complete or done.complete:
            return done
        if total is not None and done.offset != total:
            raise DraftFault(DraftCode.INCONSISTENT_LENGTH, f"the upload ended at {done.offset} bytes, not at its "
                                                            f"length of {total}")
        return DraftUpload(Upload.of(await self.uploads.set_length(upload.id, principal, done.offset)))

    async def _declare(self, upload: DraftUpload, principal: Principal, total: int) -> DraftUpload:
        """Record an Upload-Length announced by an append (the draft: later requests must match it)."""
        engine = self.uploads.engine
        for _ in range(20):
            session = upload.upload.session
            fields = replace(upload.upload.fields, declared_length=total)
            extra = {**session.extra, **fields.to_extra()}
            try:
                return DraftUpload(Upload.of(await engine.change(session, SessionChanges(extra=extra))))
            except errors.Conflict:
                await anyio.sleep(0.01)
                upload = await self.get(upload.id, principal)
        raise errors.Conflict("the upload is changing too fast to record its length")


    async def _remember(self, upload_id: str, principal: Principal, digests: Mapping[str, bytes]) -> None:
        """Record the Repr-Digest of an append (an upload already complete is left to the append's refusal)."""
        engine = self.uploads.engine
        for _ in range(20):
            upload = await self.get(upload_id, principal)
            fields = upload.upload.fields
            known = dict(fields.repr_digest)
            wanted = dict(_encoded(digests))
            if upload.complete:
                return
            if any(known.get(name, value) != value for name, value in wanted.items()):
                raise DraftFault(DraftCode.CONFLICTING_DIGEST, "the Repr-Digest differs from the one sent earlier "
                                                               "for this upload")
            if known.keys() >= wanted.keys():
                return
            recorded = replace(fields, repr_digest=tuple(sorted({**known, **wanted}.items())))
            session = upload.upload.session
            try:
                await engine.change(session, SessionChanges(extra={**session.extra, **recorded.to_extra()}))
                return
            except errors.Conflict:
                await anyio.sleep(0.01)
        raise errors.Conflict("the upload is changing too fast to record its Repr-Digest")


def _encoded(digests: Mapping[str, bytes]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((name, base64.b64encode(value).decode()) for name, value in digests.items()))


def _append_rules(offset: int, count: int) -> Callable[[Session], None]:
    """The draft's refusals of an append of ``count`` bytes at ``offset``: a completed upload, and content
    beyond the upload's (announced) length."""
    def check(session: Session) -> None:
        upload = DraftUpload(Upload.of(session))
        if upload.complete:
            raise DraftFault(DraftCode.COMPLETED, "the upload is already complete")
        if upload.length is not None and offset + count > upload.length:
            raise DraftFault(DraftCode.INCONSISTENT_LENGTH, f"the content goes beyond the upload's length of "
                                                            f"{upload.length}")
    return check


async def _repeated_completion(upload: DraftUpload, offset: int, complete: bool, length: int | None,
                               count: int | None, body: Body) -> bool:
    """An empty append that completes an upload already complete at exactly ``offset``: it changes nothing, so
    before interop 6 it is answered as a success (as tusd answers such a tus PATCH), not with a 400.
    tus-js-client sends one (chunked, with no Content-Length) when the response to its completing append was
    lost: HEAD carries no Upload-Length before 6, so the client cannot tell the upload is done and appends the
    empty rest. From 6 HEAD says the length, and -11 makes this append a completed-upload error explicitly.
    A chunked body is read to its first non-empty piece to tell; the upload is refused anyway if it has one."""
    if not (upload.complete and complete and offset == upload.offset and length in (None, offset)):
        return False
    if count is not None:
        return count == 0
    async for piece in body:
        if piece:
            return False
    return True


def _consistent(length: int | None, implied: int | None) -> int | None:
    """The final size from Upload-Length and the one a completing request implies; they must agree."""
    if length is not None and implied is not None and length != implied:
        raise DraftFault(DraftCode.INCONSISTENT_LENGTH, f"Upload-Length {length} disagrees with the {implied} bytes "
                                                        "the request completes the upload with")
    return length if length is not None else implied


async def _capped(body: Body, limit: int, is_length: bool, append_limit: int | None) -> AsyncIterator[bytes]:
    """``body``, failing (nothing is recorded then) once it goes beyond the upload's length or max-size
    (``limit`` more bytes) or beyond max-append-size."""
    total = 0
    async for piece in body:
        total += len(piece)
        if append_limit is not None and total > append_limit:
            raise errors.TooLarge(f"appends may carry at most {append_limit} bytes")
        if total > limit:
            if is_length:
                raise errors.LengthMismatch("the content goes beyond the upload's length")
            raise errors.TooLarge(f"the upload would grow beyond its maximum size by more than {limit} bytes")
        yield piece
