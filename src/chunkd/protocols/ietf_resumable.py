"""The IETF draft "Resumable Uploads for HTTP" (interop versions 3 to 8) on ``/files/``, beside tus 1.0.

:class:`chunkd.protocols.tus.TusAPI` hands a request here when it carries ``Upload-Draft-Interop-Version``
with a version of :data:`~chunkd.protocols.ietf_wire.VERSIONS`; the answer then follows that version (its
table row says what differs). Uploads are tus uploads (same ids, URLs, auth, expiry, events), so the upload
URL answered here works with the same version, and with tus too. The draft's rules are in
:class:`chunkd.services.ietf_uploads.DraftUploads`, the wire format in :mod:`chunkd.protocols.ietf_wire`.

Procedures: creation is any request with a body method (POST, PUT, PATCH) to ``/files/`` that carries the
completeness field; ``HEAD`` on an upload retrieves its offset, ``PATCH`` appends, ``DELETE`` cancels. When
chunkd's server offers interim responses, a creation is answered first with ``104 Upload Resumption
Supported`` and the upload's ``Location`` (:func:`chunkd.protocols._http.send_informational`).
See docs/ietf-resumable.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from chunkd.auth.authenticator import Authenticator, Unauthenticated
from chunkd.auth.permissions import TUS_READ, TUS_READWRITE
from chunkd.core import errors
from chunkd.core.body import Body, ClientGone
from chunkd.core.checksum import verified
from chunkd.core.principal import Principal
from chunkd.protocols import _parse
from chunkd.protocols._http import public_base, request_body, send_informational
from chunkd.protocols.ietf_wire import (
    INTEROP_HEADER,
    PARTIAL_UPLOAD,
    VERSIONS,
    DraftError,
    Version,
    completeness,
    digest_field,
    disposition_filename,
    error_response,
    map_core_error,
    map_fault,
    media_type,
    parse_digest,
    parse_digests,
    sf_integer,
    upload_limit,
    wanted_digest,
)
from chunkd.protocols.tus_wire import FAULTS, UPLOAD_ID
from chunkd.services.ietf_uploads import DraftFault, DraftUpload, DraftUploads, Limits
from chunkd.services.tus_records import TusFault
from chunkd.services.tus_uploads import TusUploads

log = logging.getLogger("chunkd.ietf")

PREFIX = "/files"
CREATION_METHODS = ("POST", "PUT", "PATCH")


def requested_version(request: Request) -> Version | None:
    """The interop version a request asks for, None when it names none this server speaks."""
    raw = request.headers.get(INTEROP_HEADER.lower())
    if raw is None:
        return None
    try:
        return VERSIONS.get(int(raw.strip()))
    except ValueError:
        return None


@dataclass
class _Seen:
    """What a request has learned so far: its principal and the upload it acts on (errors report its state)."""

    principal: Principal | None = None
    upload_id: str = ""
    location: str = ""  # a creation's new upload URL: its errors hand it out too, to resume from


class IetfDraftAPI:
    """The draft's procedures over the tus service's uploads."""

    def __init__(self, uploads: TusUploads, authenticator: Authenticator, limits: Limits) -> None:
        self.auth = authenticator
        self.limits = limits
        self.service = DraftUploads(uploads, limits)

    async def dispatch(self, request: Request, method: str, version: Version) -> Response:
        """Answer ``request`` (``method`` after X-HTTP-Method-Override) by ``version`` of the draft."""
        state = _Seen()
        try:
            return await self._dispatch(request, method, version, state)
        except DraftError as exc:
            return await self._error(exc, version, state)
        except DraftFault as exc:
            empty = (_parse.parse_uint(request.headers.get("content-length", "").strip()) or 0) == 0
            return await self._error(map_fault(exc, version, empty), version, state)
        except TusFault as exc:  # the tus service's refusals (the maximum size; a tus final upload's parts)
            return await self._error(DraftError(FAULTS[exc.code], exc.message), version, state)
        except ClientGone:
            return error_response(DraftError(400, "the client closed the connection mid-body"), version)
        except errors.ChunkdError as exc:
            provided = _parse.parse_uint(request.headers.get("upload-offset", "").strip())
            return await self._error(map_core_error(exc, provided), version, state)
        except Exception:
            log.exception("unexpected error in %s %s", method, request.url.path)
            return error_response(DraftError(500, "internal error"), version)

    async def _dispatch(self, request: Request, method: str, version: Version,
                        state: _Seen) -> Response:
        if method == "OPTIONS":
            return self.options(version)
        upload_id = request.path_params.get("upload_id", "")
        if not upload_id:
            if method not in CREATION_METHODS:
                raise DraftError(405, f"{method} does not create uploads", headers={
                    "Allow": ", ".join([*CREATION_METHODS, "OPTIONS"])})
            state.principal = self._authenticate(request, write=True)
            return await self.create(request, version, state)
        if method not in ("HEAD", "PATCH", "DELETE"):
            raise DraftError(405, f"{method} is not allowed on an upload",
                             headers={"Allow": "HEAD, PATCH, DELETE, OPTIONS, GET"})
        if not UPLOAD_ID.fullmatch(upload_id):
            raise DraftError(404, "no such upload")
        state.principal = self._authenticate(request, write=method != "HEAD")
        if method == "HEAD":
            return await self.head(request, version, upload_id, state.principal)
        if method == "PATCH":
            return await self.append(request, version, upload_id, state)
        return await self.cancel(request, version, upload_id, state.principal)

    def _authenticate(self, request: Request, write: bool) -> Principal:
        try:
            principal = self.auth.authenticate(request.headers, request.scope)
        except Unauthenticated as exc:
            raise DraftError(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc
        needed = (TUS_READWRITE,) if write else (TUS_READWRITE, TUS_READ)
        if not principal.has_any(*needed):
            raise DraftError(403, f"this needs the {' or '.join(needed)} permission")
        return principal

    # -- procedures -------------------------------------------------------------------------------
    def options(self, version: Version) -> Response:
        headers = {INTEROP_HEADER: str(version.interop)}
        if version.limits:
            headers["Upload-Limit"] = upload_limit(version, self.limits, self.limits.max_age)
        if version.partial_upload:
            headers["Accept-Patch"] = PARTIAL_UPLOAD  # required from interop 8, true from 6
        return Response(status_code=204, headers=headers)

    async def create(self, request: Request, version: Version, state: _Seen) -> Response:
        h = request.headers
        complete = completeness(version, h, required=True)
        assert complete is not None
        if "upload-offset" in h:
            raise DraftError(400, "a creation request takes no Upload-Offset")
        length = sf_integer(h.get("upload-length"), "Upload-Length")
        count = _content_length(request)
        body = self._body(request, version, complete_from_start=complete)
        assert state.principal is not None
        content_type = media_type(h.get("content-type"))
        if content_type in (PARTIAL_UPLOAD, "application/offset+octet-stream"):
            content_type = ""  # tus-js-client labels its creation body so; it names no media type

        async def created(upload: DraftUpload) -> None:
            state.upload_id, state.location = upload.id, self._location(request, upload.id)
            if count != 0:
                headers = {"Location": state.location, INTEROP_HEADER: str(version.interop)}
                if version.limits:
                    headers["Upload-Limit"] = self._limit(version, upload)
                send_informational(request, 104, headers)

        upload = await self.service.create(state.principal, complete=complete, length=length, count=count, body=body,
                                           content_type=content_type,
                                           name=disposition_filename(h.get("content-disposition")), created=created,
                                           digests=self._repr_digests(request, version))
        headers = {**self._state_headers(version, upload), **await self._want(request, version, upload)}
        headers["Location"] = self._location(request, upload.id)
        return Response(status_code=201, headers=headers)

    async def head(self, request: Request, version: Version, upload_id: str, principal: Principal) -> Response:
        h = request.headers
        forbidden = ["upload-offset", version.complete_field.lower(), *(["upload-length"] if version.length_field
                                                                          else [])]
        if any(name in h for name in forbidden):
            raise DraftError(400, "offset retrieval takes no Upload-Offset, completeness or length field")
        upload = await self.service.get(upload_id, principal)
        headers = self._state_headers(version, upload)
        headers["Cache-Control"] = "no-store"
        if version.length_field and upload.length is not None:
            headers["Upload-Length"] = str(upload.length)
        return Response(status_code=204, headers=headers)

    async def append(self, request: Request, version: Version, upload_id: str,
                     state: _Seen) -> Response:
        h = request.headers
        if version.partial_upload and media_type(h.get("content-type")) != PARTIAL_UPLOAD:
            raise DraftError(415, f"an append needs Content-Type: {PARTIAL_UPLOAD}",
                             headers={"Accept-Patch": PARTIAL_UPLOAD})
        offset = sf_integer(h.get("upload-offset"), "Upload-Offset")
        if offset is None:
            raise DraftError(400, "an append needs Upload-Offset")
        complete = completeness(version, h, required=version.complete_required)
        if complete is None:
            complete = True  # before interop 7 only an incomplete append had to say so
        length = sf_integer(h.get("upload-length"), "Upload-Length") if version.length_field else None
        count = _content_length(request)
        body = self._body(request, version, complete_from_start=complete and offset == 0)
        assert state.principal is not None
        state.upload_id = upload_id
        upload = await self.service.append(upload_id, state.principal, offset=offset, complete=complete, length=length,
                                           count=count, body=body, digests=self._repr_digests(request, version),
                                           repeat_ok=not version.length_field)
        headers = {**self._state_headers(version, upload), **await self._want(request, version, upload)}
        return Response(status_code=version.append_status, headers=headers)

    async def cancel(self, request: Request, version: Version, upload_id: str, principal: Principal) -> Response:
        if "upload-offset" in request.headers or version.complete_field.lower() in request.headers:
            raise DraftError(400, "cancellation takes no Upload-Offset or completeness field")
        await self.service.cancel(upload_id, principal)
        return Response(status_code=204, headers={INTEROP_HEADER: str(version.interop)})

    # -- helpers ----------------------------------------------------------------------------------
    def _body(self, request: Request, version: Version, *, complete_from_start: bool) -> Body:
        """The request body, verified against Content-Digest and -- when this one request carries the whole
        representation -- Repr-Digest (from interop 6, which brought them in): a mismatch records nothing."""
        body: Body = request_body(request)
        if not version.digests:
            return body
        content = parse_digest(request.headers.get("content-digest"), "Content-Digest")
        if content is not None:
            body = verified(body, *content)
        if complete_from_start:
            representation = parse_digest(request.headers.get("repr-digest"), "Repr-Digest")
            if representation is not None:
                body = verified(body, *representation)
        return body

    @staticmethod
    def _repr_digests(request: Request, version: Version) -> dict[str, bytes]:
        """The request's Repr-Digest (from interop 6): the upload keeps it and is checked against it when it
        completes, whichever request that is."""
        return parse_digests(request.headers.get("repr-digest"), "Repr-Digest") if version.digests else {}

    async def _want(self, request: Request, version: Version, upload: DraftUpload) -> dict[str, str]:
        """``Repr-Digest`` for a ``Want-Repr-Digest`` (from interop 6: -05 describes it), once the upload is
        complete and published: computed from the stored object, one extra read of it."""
        algorithm = wanted_digest(request.headers.get("want-repr-digest")) if version.digests else None
        if algorithm is None or not upload.complete or not upload.upload.finished:
            return {}
        return {"Repr-Digest": digest_field(algorithm, await self.service.digest(upload, algorithm))}

    def _state_headers(self, version: Version, upload: DraftUpload) -> dict[str, str]:
        headers = {INTEROP_HEADER: str(version.interop), "Upload-Offset": str(upload.offset),
                   version.complete_field: version.flag(upload.complete)}
        if version.limits:
            headers["Upload-Limit"] = self._limit(version, upload)
        return headers

    def _limit(self, version: Version, upload: DraftUpload) -> str:
        session = upload.upload.session
        remaining = None if upload.complete else session.expires_at - self.service.uploads.engine.clock()
        return upload_limit(version, self.limits, remaining)

    async def _error(self, exc: DraftError, version: Version, state: _Seen) -> Response:
        """The error answer; for a request on an upload that is still there, with its offset and completeness
        (the draft: a response about an active upload carries its offset, failures too)."""
        if state.upload_id and state.principal is not None and exc.status not in (401, 403, 404):
            upload: DraftUpload | None
            try:
                upload = await self.service.get(state.upload_id, state.principal)
            except errors.ChunkdError:
                upload = None
            if upload is not None:
                exc.headers = {**self._state_headers(version, upload), **exc.headers}
                if state.location:
                    exc.headers["Location"] = state.location
        return error_response(exc, version)

    def _location(self, request: Request, upload_id: str) -> str:
        return f"{public_base(request)}{PREFIX}/{upload_id}"


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    count = _parse.parse_uint(value.strip(), _parse.INT64_MAX)
    if count is None:
        raise DraftError(400, "Content-Length is malformed")
    return count
