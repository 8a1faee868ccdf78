"""The web dashboard at ``/dashboard``: three static files shipped inside the package (no build step, no
third-party code). The page itself needs no credential; everything it shows comes from the ``/chunkd/v1``
admin API with the bearer token the operator types in, so it sees exactly what that token may see.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

_FILES = {"index.html": "text/html; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8",
          "dashboard.css": "text/css; charset=utf-8"}
# same-origin only: the page loads nothing from elsewhere and can talk to no other server
_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


def _load() -> dict[str, bytes]:
    folder = resources.files("chunkd.server") / "dashboard"
    return {name: (folder / name).read_bytes() for name in _FILES}


def dashboard_routes() -> list[BaseRoute]:
    """``GET /dashboard`` (redirects to ``/dashboard/``) and its three files; read once at start-up."""
    files = _load()

    async def page(request: Request) -> Response:
        name = request.path_params.get("name") or "index.html"
        if name not in files:
            return Response("not found", status_code=404, media_type="text/plain", headers=_HEADERS)
        return Response(files[name], media_type=_FILES[name], headers=_HEADERS)

    async def bare(request: Request) -> Response:
        return RedirectResponse("/dashboard/", status_code=308)

    return [Route("/dashboard", bare, methods=["GET"]), Route("/dashboard/", page, methods=["GET"]),
            Route("/dashboard/{name}", page, methods=["GET"])]
