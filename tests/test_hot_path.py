"""The chunk requests' way past the router (protocols/_hot.py): it takes exactly the requests the router
would give the same route, with the same scope, and they are answered and counted as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Match, Mount, Router

from chunkd.protocols._hot import HotPath, HotRoute
from chunkd.server.app import create_app
from chunkd.settings import Settings

UPLOAD = "0123456789abcdef0123456789abcdef"


def _hot_routes(app: Starlette) -> list[HotRoute]:
    [entry] = [m for m in app.user_middleware if m.cls is HotPath]
    routes: list[HotRoute] = entry.kwargs["routes"]
    return routes


def _routed(app: Starlette, scope: dict[str, Any]) -> dict[str, Any] | None:
    """What Starlette's routers set in the scope for this request (its rules: the first full match, into
    mounts), None when no route fully matches (a 404 or 405)."""
    router: Any = app.router
    scope = dict(scope)
    while True:
        for route in router.routes:
            matched, child = route.matches(scope)
            if matched is Match.FULL:
                break
        else:
            return None
        scope.update(child)
        scope["route"] = route
        if not isinstance(route, Mount):
            return scope
        router = route.app
        while not isinstance(router, Router):  # CORS middleware around the mount's router
            router = router.app


def _scope(method: str, path: str) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": [], "query_string": b""}


CASES = [  # method, path, taken past the router
    ("PATCH", f"/files/{UPLOAD}", True),
    ("PATCH", "/files/not-an-id", True),  # the router gives it the same route; tus answers 404 itself
    ("PATCH", "/files/", False),
    ("PATCH", "/files", False),
    ("PATCH", f"/files/{UPLOAD}/x", False),
    ("PATCH", f"/files/{UPLOAD}\n", False),  # the mount's pattern takes no line break: the router decides
    ("PATCH", f"/filesx/{UPLOAD}", False),
    ("POST", f"/files/{UPLOAD}", False),
    ("HEAD", f"/files/{UPLOAD}", False),
    ("PUT", "/ImageStore/a/b.bin/$/UploadChunk", True),
    ("PUT", "/ImageStore/$/UploadChunk", True),
    ("PUT", "/ImageStore//etc/$/UploadChunk", True),
    ("PUT", "/ImageStore/a$b/UploadChunk", False),  # a file named UploadChunk: PUT of content
    ("PUT", "/ImageStore/a/UploadChunk", False),
    ("PUT", "/ImageStore/a/$/UploadChunk\n", False),
    ("PUT", "/ImageStore/a/$/UploadChunkX", False),
    ("PUT", "/ImageStore/a/$/b/$/UploadChunk", False),
    ("GET", "/ImageStore/a/$/UploadChunk", False),
    ("PATCH", "/ImageStore/a/$/UploadChunk", False),
    ("PUT", "/v1.0/x/$/UploadChunk", False),
]


@pytest.mark.parametrize("cors", [False, True])
def test_hot_routes_agree_with_the_router(tmp_path: Path, cors: bool) -> None:
    settings = Settings(data_dir=tmp_path / "data", cors_origins="https://app.example" if cors else "")
    app = create_app(settings)
    hot = _hot_routes(app)
    assert {(h.method, h.prefix) for h in hot} == {("PATCH", "/files/"), ("PUT", "/ImageStore/")}
    for method, path, taken in CASES:
        scope = _scope(method, path)
        updates = next((u for h in hot if h.method == method and (u := h.match(scope)) is not None), None)
        assert (updates is not None) == taken, (method, path)
        if updates is not None:
            routed = _routed(app, scope)
            assert routed is not None, (method, path)
            for key in ("route", "path_params", "root_path", "app_root_path", "endpoint"):
                assert {**scope, **updates}.get(key) == routed.get(key), (method, path, key)


def _requests(app: Starlette, calls: list[tuple[str, str, dict[str, str], bytes]]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        out = []
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                for method, url, headers, body in calls:
                    if method == "PATCH" and url == "LOCATION":
                        url = out[1].headers["location"]
                    out.append(await c.request(method, url, headers=headers, content=body))
        return out
    return anyio.run(go)


TUS = {"Tus-Resumable": "1.0.0"}
CHUNK = {**TUS, "Content-Type": "application/offset+octet-stream", "Origin": "https://app.example"}


def _counted(metrics: httpx.Response) -> dict[tuple[str, str, str], float]:
    return {(s.labels["family"], s.labels["operation"], s.labels["status"]): s.value
            for f in text_string_to_metric_families(metrics.text) for s in f.samples
            if s.name == "chunkd_requests_total"}


def test_chunks_past_the_router_are_answered_and_counted_as_before(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data", no_auth=True, cors_origins="https://app.example"))
    sid = "2b6c5f43-5cc1-4a3c-9d0e-9a4c0e0ad5f1"
    sf = f"/ImageStore/a/b.bin/$/UploadChunk?api-version=6.0&session-id={sid}"
    before, created, first, stale, bad, chunk, denied, after = _requests(app, [
        ("GET", "/metrics", {}, b""),  # the registry is the process's: other tests' requests are in it too
        ("POST", "/files/", {**TUS, "Upload-Length": "6"}, b""),
        ("PATCH", "LOCATION", {**CHUNK, "Upload-Offset": "0"}, b"abc"),
        ("PATCH", "LOCATION", {**CHUNK, "Upload-Offset": "0"}, b"abc"),  # 409: the offset is 3 now
        ("PATCH", f"/files/{UPLOAD}", {**CHUNK, "Upload-Offset": "0"}, b"abc"),
        ("PUT", sf, {"Content-Range": "bytes 0-2/6"}, b"abc"),
        ("PUT", sf.replace("api-version=6.0", "api-version=1.0"), {"Content-Range": "bytes 3-5/6"}, b"def"),
        ("GET", "/metrics", {}, b""),
    ])
    assert created.status_code == 201
    assert first.status_code == 204 and first.content == b""
    assert first.headers["tus-resumable"] == "1.0.0" and first.headers["upload-offset"] == "3"
    assert "upload-expires" in first.headers and "content-length" not in first.headers
    assert first.headers["access-control-allow-origin"] == "https://app.example"  # CORS as under the router
    assert stale.status_code == 409 and stale.headers["upload-offset"] == "3"
    assert bad.status_code == 404 and bad.text.startswith("ERR_UPLOAD_NOT_FOUND")
    assert chunk.status_code == 200 and chunk.content == b"" and chunk.headers["content-length"] == "0"
    assert denied.status_code == 400 and denied.json()["Error"]["Code"] == "E_INVALIDARG"
    counted = {key: value - _counted(before).get(key, 0) for key, value in _counted(after).items()}
    assert counted[("tus", "PATCH /{upload_id}", "204")] == 1
    assert counted[("tus", "PATCH /{upload_id}", "409")] == 1
    assert counted[("tus", "PATCH /{upload_id}", "404")] == 1
    operation = "PUT /ImageStore/{content:sfactionprefix}$/UploadChunk"
    assert counted[("sf", operation, "200")] == 1
    assert counted[("sf", operation, "400")] == 1
