"""The chunk requests' short way past Starlette's router, and bodiless answers without a Response's set-up.

Every 64 KiB chunk is one request, so what the HTTP layer costs per request is paid per chunk. Starlette's
router tries each route's pattern in turn (≈ 40 before tus's ``/files`` mount), then the mount's own
router, and its exception middleware and ``request_response`` wrapper add a layer each. :class:`HotPath`
sits in front of the router and recognises exactly the shapes a front end offers as a :class:`HotRoute`
(tus ``PATCH /files/{id}``, Service Fabric ``PUT .../$/UploadChunk``): a method, a path prefix and
suffix, then the router's *own* route objects matched in order (a mount, then its route), so the same
patterns decide and the scope gets the same ``route``, ``path_params``, ``root_path`` and ``endpoint`` the
router would set (the request metrics label the operation from ``scope["route"]``). Any request that is
not exactly such a shape -- another method, a path the routes do not fully match -- goes to the router
unchanged, with its 404/405 answers and everything else. A hot route is only correct if no route before it
in the router could fully match the same requests; ``tests/test_hot_path.py`` checks that for the app.

Hot apps do not run under Starlette's exception middleware: the front ends' handlers answer every
exception themselves (in their own error format), as they do under the router.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send


@dataclass(frozen=True)
class HotRoute:
    """One request shape served past the router: ``method``, a path starting with ``prefix`` and ending
    with ``suffix``, fully matched by each route of ``chain`` in turn (the router's own objects, the
    outermost first); ``app`` serves it with the scope those matches give."""

    method: str
    prefix: str
    chain: tuple[BaseRoute, ...]
    app: ASGIApp
    suffix: str = ""

    def match(self, scope: Scope) -> Scope | None:
        """The scope entries the router would set for this request, None when it is not this shape."""
        path = scope["path"]
        if not path.startswith(self.prefix) or not path.endswith(self.suffix):
            return None
        updates: dict[str, object] = {}
        view = scope
        for route in self.chain:
            matched, child = route.matches(view)
            if matched is not Match.FULL:
                return None
            updates.update(child)
            updates["route"] = route  # the innermost wins, as with nested routers
            view = {**scope, **updates}  # the next route matches below this one's root_path
        return updates


class HotPath:
    """ASGI middleware in front of the router: a request of a :class:`HotRoute`'s shape goes straight to
    its app, everything else to ``app``. ``router`` is set as ``scope["router"]`` as Starlette does."""

    def __init__(self, app: ASGIApp, routes: Sequence[HotRoute], router: object = None) -> None:
        self.app = app
        self.router = router
        self._by_method: dict[str, tuple[HotRoute, ...]] = {}
        for route in routes:
            self._by_method[route.method] = (*self._by_method.get(route.method, ()), route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for hot in self._by_method.get(scope["method"], ()):
                updates = hot.match(scope)
                if updates is not None:
                    if self.router is not None:
                        scope.setdefault("router", self.router)
                    scope.update(updates)
                    await hot.app(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class Bodiless(Response):
    """A response without a body whose headers are already encoded: what a chunk's 2xx is (tus 204 with
    its offset, Service Fabric 200). :class:`~starlette.responses.Response` would build the same header
    list from a dict on every request; the bytes sent are identical."""

    def __init__(self, status_code: int, raw_headers: list[tuple[bytes, bytes]]) -> None:
        # Response.__init__ is skipped on purpose (it renders and encodes the headers); these are the
        # attributes Response's own methods and callers read
        self.status_code = status_code
        self.body = b""
        self.background = None
        self.raw_headers = raw_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": b""})


def request_app(endpoint: Callable[[Request], Awaitable[Response]]) -> ASGIApp:
    """``endpoint(request) -> Response`` as an ASGI app, like Starlette's ``request_response`` without
    its exception wrapper (the endpoints answer every exception themselves)."""
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await endpoint(Request(scope, receive, send))
        await response(scope, receive, send)
    return app


__all__ = ["Bodiless", "HotPath", "HotRoute", "request_app"]
