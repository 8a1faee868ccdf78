"""chunkd's own JSON admin API under ``/chunkd/v1``: list, inspect and cancel upload sessions of every
API family, and per-process transfer counters. Used by ``chunkd sessions`` and the web dashboard.

Owner-scoped: a caller sees and deletes only its own sessions unless it holds the ``Chunkd.Admin`` role
(then ``?all=true`` lists everyone's). Ranges are half-open ``[start, end)`` byte pairs.

=========================================  =====================================================
``GET /chunkd/v1/sessions``                 ``?family=&limit=&after=&all=`` -> ``{"sessions": [...], "next": id}``
``GET /chunkd/v1/sessions/{id}``            one session with ``received`` / ``missing`` ranges and counters
``DELETE /chunkd/v1/sessions/{id}``         cancel (staged bytes discarded; a committed file stays) -> 204
``GET /chunkd/v1/stats``                    this process's counters (bytes in request bodies, new bytes...)
``GET /chunkd/v1/summary``                  ``?all=`` byte totals and counts per family/state, from the store
``GET /chunkd/v1/openapi.json``             the OpenAPI document of this API (no credential needed)
=========================================  =====================================================

The transfer counters live in the serving process only (they are diagnostics, not state): with several
workers each reports its own share.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from chunkd.auth.authenticator import Authenticator, Unauthenticated
from chunkd.auth.permissions import CHUNKD_ADMIN
from chunkd.core import errors
from chunkd.core.body import ClientGone
from chunkd.core.engine import Engine
from chunkd.core.events import Event
from chunkd.core.models import Session
from chunkd.core.principal import Principal
from chunkd.protocols._errors import lookup, retry_after
from chunkd.protocols._http import iso_date
from chunkd.protocols._parse import parse_uint
from chunkd.protocols.admin_openapi import DOCUMENT

log = logging.getLogger("chunkd.admin")

PREFIX = "/chunkd/v1"
MAX_TRACKED = 10_000
MAX_LISTED_RANGES = 1000  # per list in one session's detail; missingRangesTruncated says when there are more
MAX_SUMMARISED = 20_000  # sessions a summary reads (pages of 1000); beyond that it says truncated

ERRORS: dict[type[errors.ChunkdError], tuple[int, str]] = {
    errors.InvalidInput: (400, "invalidRequest"),
    errors.NotFound: (404, "notFound"),
    errors.SessionGone: (404, "notFound"),
    errors.PermissionDenied: (404, "notFound"),  # do not reveal other owners' sessions
    errors.Conflict: (409, "conflict"),
    errors.TooLarge: (413, "tooLarge"),
    errors.WriteInterrupted: (409, "conflict"),
    errors.PiecesMissing: (503, "unavailable"),
    errors.StorageFull: (507, "insufficientStorage"),
    errors.StorageUnavailable: (503, "unavailable"),
    ClientGone: (400, "invalidRequest"),
}


def _error(status: int, code: str, message: str, cause: errors.ChunkdError | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=retry_after(status, cause))


_OTHER_METHODS = ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]


def _not_allowed(allow: str) -> Any:
    async def endpoint(request: Request) -> Response:
        return JSONResponse({"error": {"code": "methodNotAllowed", "message": f"{request.method} is not allowed; "
                                       f"use {allow}"}}, status_code=405, headers={"Allow": allow})
    return endpoint


def _flag(request: Request) -> bool | None:
    """``?all=``: absent, ``true`` or ``false``; anything else is None (the caller answers 400)."""
    value = request.query_params.get("all", "false").strip().lower()
    return {"true": True, "false": False}.get(value)


class TransferStats:
    """Counts what the engine reports for every write: request-body bytes, new bytes, duplicate writes."""

    def __init__(self) -> None:
        self.totals = {"writes": 0, "body_bytes": 0, "new_bytes": 0, "duplicate_writes": 0}
        self.sessions: OrderedDict[str, dict[str, int]] = OrderedDict()

    async def __call__(self, event: Event) -> None:
        if event.kind != "progress" or "new_bytes" not in event.detail:
            return
        new = int(event.detail.get("new_bytes", 0))  # type: ignore[call-overload]
        body = int(event.detail.get("body_bytes", new))  # type: ignore[call-overload]
        per = self.sessions.setdefault(event.session.id, {"writes": 0, "body_bytes": 0, "new_bytes": 0,
                                                          "duplicate_writes": 0})
        self.sessions.move_to_end(event.session.id)
        while len(self.sessions) > MAX_TRACKED:
            self.sessions.popitem(last=False)
        for counters in (self.totals, per):
            counters["writes"] += 1
            counters["body_bytes"] += body
            counters["new_bytes"] += new
            counters["duplicate_writes"] += 1 if body and not new else 0


def owner_principal(owner: str) -> Principal:
    """The principal a session owner key (``Principal.key``) stands for, so an admin can act as it."""
    kind, _, rest = owner.partition(":")
    if kind == "user":
        tenant, _, user = rest.partition(":")
        return Principal(kind="user", tenant=tenant, user=user)
    if kind == "app":
        tenant, _, app = rest.partition(":")
        return Principal(kind="app", tenant=tenant, app=app)
    if kind == "cert":
        return Principal(kind="cert", user=rest)
    return Principal(kind="anonymous")


def session_json(session: Session) -> dict[str, Any]:
    return {
        "id": session.id, "family": session.family, "state": session.state.value, "owner": session.owner,
        "tenant": session.tenant, "namespace": session.namespace, "key": session.key, "name": session.name,
        "contentType": session.content_type, "length": session.length, "received": session.received,
        "createdAt": iso_date(session.created_at), "modifiedAt": iso_date(session.modified_at),
        "expiresAt": iso_date(session.expires_at),
    }


class AdminAPI:
    def __init__(self, engine: Engine, authenticator: Authenticator) -> None:
        self.engine = engine
        self.auth = authenticator
        self.stats = TransferStats()
        engine.events.subscribe(self.stats)

    @property
    def routes(self) -> list[BaseRoute]:
        return [
            Route(f"{PREFIX}/sessions", self._wrap(self.list_sessions), methods=["GET"]),
            Route(f"{PREFIX}/sessions/{{session_id}}", self._wrap(self.get_session), methods=["GET"]),
            Route(f"{PREFIX}/sessions/{{session_id}}", self._wrap(self.delete_session), methods=["DELETE"]),
            Route(f"{PREFIX}/stats", self._wrap(self.get_stats), methods=["GET"]),
            Route(f"{PREFIX}/summary", self._wrap(self.get_summary), methods=["GET"]),
            Route(f"{PREFIX}/openapi.json", self.openapi, methods=["GET"]),
            # any other method: 405 with Allow in this API's format (else the blob account's catch-all on
            # /chunkd would answer in Azure XML)
            *(Route(path, _not_allowed(allow), methods=_OTHER_METHODS) for path, allow in (
                (f"{PREFIX}/sessions", "GET, HEAD"), (f"{PREFIX}/sessions/{{session_id}}", "GET, HEAD, DELETE"),
                (f"{PREFIX}/stats", "GET, HEAD"), (f"{PREFIX}/summary", "GET, HEAD"),
                (f"{PREFIX}/openapi.json", "GET, HEAD"))),
        ]

    @staticmethod
    async def openapi(request: Request) -> Response:
        return JSONResponse(DOCUMENT)

    def _wrap(self, handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                principal = self.auth.authenticate(request.headers, request.scope)
            except Unauthenticated as exc:
                return _error(401, "unauthenticated", str(exc))
            try:
                response: Response = await handler(request, principal)
                return response
            except errors.ChunkdError as exc:
                entry = lookup(ERRORS, exc)
                if entry is not None:
                    return _error(*entry, exc.message, exc)
                log.exception("unexpected core error")
                return _error(500, "internal", "internal error")
            except Exception:
                log.exception("unexpected error in %s %s", request.method, request.url.path)
                return _error(500, "internal", "internal error")
        return endpoint

    @staticmethod
    def _is_admin(principal: Principal) -> bool:
        return principal.has_any(CHUNKD_ADMIN)

    async def list_sessions(self, request: Request, principal: Principal) -> Response:
        q = request.query_params
        number = parse_uint(q.get("limit", "100").strip())
        if number is None:
            return _error(400, "invalidRequest", "limit must be a whole number")
        limit = max(1, min(1000, number))
        everyone = _flag(request)
        if everyone is None:
            return _error(400, "invalidRequest", "all must be true or false")
        if everyone and not self._is_admin(principal):
            return _error(403, "accessDenied", f"listing every owner's sessions needs the {CHUNKD_ADMIN} role")
        # an admin may narrow ``all`` to one owner; anyone else is always narrowed to themselves
        owner = (q.get("owner") or None) if everyone else principal.key
        sessions = await self.engine.list_sessions(owner=owner, family=q.get("family") or None, limit=limit + 1,
                                                   after=q.get("after", ""))
        more = len(sessions) > limit
        sessions = sessions[:limit]
        return JSONResponse({"sessions": [session_json(s) for s in sessions],
                             "next": sessions[-1].id if more else None})

    async def _load(self, request: Request, principal: Principal) -> Session:
        session_id = request.path_params["session_id"]
        if self._is_admin(principal):
            return await self.engine.get_session(session_id)
        return await self.engine.get_session(session_id, principal=principal)

    async def get_session(self, request: Request, principal: Principal) -> Response:
        session = await self._load(request, principal)
        received = list(await self.engine.received(session))
        missing = (await self.engine.missing(session, MAX_LISTED_RANGES + 1) if session.length is not None
                   else [])
        body = session_json(session)
        body["receivedRanges"] = [[s, e] for s, e in received[:MAX_LISTED_RANGES]]
        body["receivedRangesTruncated"] = len(received) > MAX_LISTED_RANGES
        body["missingRanges"] = [[s, e] for s, e in missing[:MAX_LISTED_RANGES]]
        body["missingRangesTruncated"] = len(missing) > MAX_LISTED_RANGES
        body["transfer"] = self.stats.sessions.get(session.id, {})
        return JSONResponse(body)

    async def delete_session(self, request: Request, principal: Principal) -> Response:
        session = await self._load(request, principal)
        await self.engine.delete_session(session.id, owner_principal(session.owner)
                                         if self._is_admin(principal) else principal)
        return Response(status_code=204)

    async def get_stats(self, request: Request, principal: Principal) -> Response:
        if not self._is_admin(principal):
            return _error(403, "accessDenied", f"server statistics need the {CHUNKD_ADMIN} role")
        return JSONResponse({"scope": "process", **self.stats.totals})

    async def get_summary(self, request: Request, principal: Principal) -> Response:
        """Totals from the metadata store, so every node answers the same (the dashboard's throughput is the
        difference of two polls of ``bytesReceived``, not a per-process counter)."""
        everyone = _flag(request)
        if everyone is None:
            return _error(400, "invalidRequest", "all must be true or false")
        if everyone and not self._is_admin(principal):
            return _error(403, "accessDenied", f"every owner's summary needs the {CHUNKD_ADMIN} role")
        counts: dict[str, dict[str, int]] = {}
        received = expected = seen = 0
        after = ""
        while seen < MAX_SUMMARISED:
            page = await self.engine.list_sessions(owner=None if everyone else principal.key, limit=1000,
                                                   after=after)
            for s in page:
                per = counts.setdefault(s.family, {})
                per[s.state.value] = per.get(s.state.value, 0) + 1
                received += s.received
                expected += s.length or 0
            seen += len(page)
            if len(page) < 1000:
                break
            after = page[-1].id
        return JSONResponse({"scope": "all" if everyone else "own", "sessions": counts, "bytesReceived": received,
                             "bytesExpected": expected, "truncated": seen >= MAX_SUMMARISED})
