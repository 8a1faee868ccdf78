"""/metrics policy, request families and operations, and the in-process app (one process, in-memory mode)."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chunkd.auth.tokens import issue_token
from chunkd.server.app import create_app
from chunkd.server.metrics import Families, _blob_comp, policy
from chunkd.settings import Settings


@pytest.mark.parametrize(("host", "setting", "extra", "expected"), [
    ("127.0.0.1", "auto", {}, "public"),
    ("::1", "auto", {}, "public"),
    ("localhost", "auto", {}, "public"),
    ("0.0.0.0", "auto", {}, "auth"),
    ("10.1.2.3", "auto", {}, "auth"),
    ("uploads.example.com", "auto", {}, "auth"),
    ("127.0.0.1", "auto", {"trust_proxy": True}, "auth"),  # a proxy in front makes loopback reachable
    ("127.0.0.1", "auto", {"public_url": "https://uploads.example.com"}, "auth"),
    ("0.0.0.0", "public", {}, "public"),
    ("127.0.0.1", "auth", {}, "auth"),
    ("127.0.0.1", "off", {}, "off"),
])
def test_policy(host: str, setting: str, extra: dict[str, object], expected: str) -> None:
    assert policy(Settings(host=host, metrics=setting, **extra)) == expected  # type: ignore[arg-type]


def test_a_bad_metrics_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="metrics"):
        Settings(metrics="sometimes")  # type: ignore[arg-type]


@pytest.mark.parametrize(("path", "family"), [
    ("/ImageStore/a/b/$/UploadChunk", "sf"), ("/$/GetClusterVersion", "sf"), ("/", "sf"),
    ("/v1.0/print/printers/p/jobs", "print"), ("/beta/print/printers", "print"), ("/print-upload/x", "print"),
    ("/beta/external/industryData/dataConnectors", "industry"),
    ("/files/", "tus"), ("/files/abc", "tus"), ("/files", "tus"),
    ("/acct1/container/blob.csv", "blob"), ("/blob/acct1/c", "blob"),
    ("/chunkd/v1/sessions", "admin"), ("/chunkd/v1", "admin"),
    ("/dashboard/", "dashboard"), ("/metrics", "other"), ("/nothing/here", "other"), ("/favicon.ico", "other"),
])
def test_families(path: str, family: str) -> None:
    assert Families("acct1")(path) == family


def test_the_admin_api_is_not_blob_under_the_default_account() -> None:
    families = Families("chunkd")
    assert families("/chunkd/v1/stats") == "admin"
    assert families("/chunkd/container/file") == "blob"


@pytest.mark.parametrize(("query", "suffix"), [
    (b"comp=block&blockid=QUFB", "?comp=block"), (b"restype=container&comp=list", "?comp=list"),
    (b"comp=blocklist", "?comp=blocklist"), (b"comp=evil-unbounded-value", "?comp=other"),
    (b"", ""), (b"xcomp=block", ""), (b"sig=abc", ""),
])
def test_blob_operations_are_bounded(query: bytes, suffix: str) -> None:
    assert _blob_comp(query) == suffix


def _get(app: object, path: str, token: str = "") -> httpx.Response:
    async def go() -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.get(path, headers=headers)
    return anyio.run(go)


def test_in_process_metrics_parse_and_count_requests(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data"))
    assert _get(app, "/files/nope").status_code in (401, 404)
    r = _get(app, "/metrics")
    assert r.status_code == 200
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(r.text) for s in f.samples}
    assert any(name == "chunkd_requests_total" and dict(labels).get("family") == "tus"
               for name, labels in samples)
    assert samples[("chunkd_sessions_open", (("family", "tus"),))] == 0
    assert samples[("chunkd_workers", ())] == 1


def test_metrics_off_serves_no_route(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data", metrics="off"))
    assert _get(app, "/metrics").status_code == 404


def test_metrics_auth_in_process(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data", host="0.0.0.0"))
    assert _get(app, "/metrics").status_code == 401
    secret = app.state.components.keys.jwt_secret
    assert _get(app, "/metrics", issue_token(secret, roles=["Tus.ReadWrite"])).status_code == 403
    assert _get(app, "/metrics", issue_token(secret, roles=["Chunkd.Admin"])).status_code == 200


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text.decode()) for s in f.samples}


def test_webhook_posts_are_counted() -> None:
    from chunkd.server.metrics import render
    from chunkd.server.webhooks import post

    before = _samples(render({}))

    async def go() -> None:
        # a receiver that accepts /ok and refuses anything else, behind httpx's in-memory transport
        transport = httpx.MockTransport(lambda r: httpx.Response(204 if r.url.path == "/ok" else 503))
        async with httpx.AsyncClient(transport=transport) as c:
            assert await post(c, "http://hook/ok", {}) is None
            assert await post(c, "http://hook/down", {}) == "HTTP 503"
    anyio.run(go)
    after = _samples(render({}))
    for result in ("delivered", "failed"):
        key = ("chunkd_webhook_deliveries_total", (("result", result),))
        assert after[key] - before.get(key, 0.0) == 1


def test_metadata_commits_are_counted_once_per_write_transaction(tmp_path: Path) -> None:
    """A 64 KiB tus PATCH on one connection commits two write transactions (its claim and its record);
    reads (HEAD) commit none."""
    from chunkd.server.metrics import render

    settings = Settings(data_dir=tmp_path / "data", no_auth=True, sweep_interval=3600)
    app = create_app(settings)
    key = ("chunkd_metadata_commits_total", ())
    tus = {"Tus-Resumable": "1.0.0"}
    chunk, n = 64 << 10, 5

    async def go() -> tuple[float, float, float]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:19080") as c:
                r = await c.post("/files/", headers={**tus, "Upload-Length": str(chunk * (n + 1))})
                assert r.status_code == 201
                path = r.headers["location"]
                before = _samples(render({})).get(key, 0.0)
                for i in range(n):
                    r = await c.patch(path, content=b"x" * chunk, headers={
                        **tus, "Upload-Offset": str(i * chunk), "Content-Type": "application/offset+octet-stream"})
                    assert r.status_code == 204
                middle = _samples(render({}))[key]
                assert (await c.head(path, headers=tus)).status_code == 200
                return before, middle, _samples(render({}))[key]
    before, middle, after = anyio.run(go)
    assert middle - before == 2 * n
    assert after == middle
