"""Auth and isolation, CORS, reverse-proxy Location, expiration and webhooks: each needs its own server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from chunkd.auth.permissions import ALL_ROLES
from chunkd.auth.tokens import issue_token, load_or_create_secret
from tests.protocols.tus.conftest import OCTETS, TUS, patch, start_server
from tests.serverproc import ServerProcess


def post(url: str, length: int = 5, **headers: str) -> httpx.Response:
    extra = {k.replace("_", "-"): v for k, v in headers.items()}
    return httpx.post(url + "/files/", headers={**TUS, "Upload-Length": str(length), **extra})


def test_bearer_tokens_scopes_and_isolation(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        secret = load_or_create_secret(server.data_dir)  # same key as `chunkd token`, without 4 subprocesses

        def bearer(app: str = "chunkd-cli", roles: tuple[str, ...] = ALL_ROLES) -> dict[str, str]:
            return {"Authorization": "Bearer " + issue_token(secret, app=app, roles=list(roles))}

        full, other = bearer(), bearer(app="another-app")
        reader, no_tus = bearer(roles=("Tus.Read",)), bearer(roles=("ImageStore.Admin",))
        reader_user = {"Authorization": "Bearer " + issue_token(secret, user="u1", scopes=["Tus.Read"])}
        assert post(server.url, **reader_user).status_code == 403  # a delegated read-only user
        assert httpx.options(server.url + "/files/").status_code == 204  # discovery needs no token
        r = post(server.url)
        assert r.status_code == 401 and r.text.startswith("ERR_UNAUTHORIZED")
        assert post(server.url, Authorization="Bearer nonsense").status_code == 401
        assert post(server.url, **no_tus).status_code == 403
        assert post(server.url, **reader).status_code == 403
        r = post(server.url, **full)
        assert r.status_code == 201
        url = r.headers["location"]
        with httpx.Client(headers=TUS) as c:
            for h in (other,):  # another principal: the upload does not exist for it
                assert c.head(url, headers=h).status_code == 404
                assert c.patch(url, headers={**h, "Content-Type": OCTETS, "Upload-Offset": "0"},
                               content=b"12345").status_code == 404
                assert c.delete(url, headers=h).status_code == 404
                final = c.post(server.url + "/files/", headers={**h, "Upload-Concat": f"final;{url}"})
                assert final.status_code == 404
            assert c.head(url, headers=full).headers["upload-offset"] == "0"
            assert c.patch(url, headers={**full, "Content-Type": OCTETS, "Upload-Offset": "0"},
                           content=b"12345").status_code == 204
            assert c.patch(url, headers={**reader, "Content-Type": OCTETS, "Upload-Offset": "5"},
                           content=b"").status_code == 403
            assert c.get(url, headers=full).content == b"12345"
            assert c.get(url, headers=other).status_code == 404
    finally:
        server.stop()


def test_cors_and_forwarded_location(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--no-auth", env={"CHUNKD_CORS_ORIGINS": "https://app.example",
                                                      "CHUNKD_TRUST_PROXY": "1"})
    try:
        files = server.url + "/files/"
        pre = httpx.options(files, headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "tus-resumable,upload-length,upload-metadata"})
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://app.example"
        assert "PATCH" in pre.headers["access-control-allow-methods"]
        assert "upload-metadata" in pre.headers["access-control-allow-headers"].lower()
        bad = httpx.options(files, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert bad.status_code == 400 and "access-control-allow-origin" not in bad.headers
        r = post(server.url, Origin="https://app.example", X_Forwarded_Host="uploads.example",
                 X_Forwarded_Proto="https")
        assert r.status_code == 201
        exposed = r.headers["access-control-expose-headers"].lower()
        for name in ("location", "upload-offset", "upload-expires", "tus-resumable", "upload-length"):
            assert name in exposed
        assert r.headers["location"].startswith("https://uploads.example/files/")
        r = httpx.post(files, headers={**TUS, "Upload-Length": "1",
                                       "Forwarded": 'for=1.2.3.4;host="cdn.example:8443";proto=https'})
        assert r.headers["location"].startswith("https://cdn.example:8443/files/")
    finally:
        server.stop()


def test_forwarded_headers_ignored_unless_trusted(server: ServerProcess) -> None:
    r = httpx.post(server.url + "/files/", headers={**TUS, "Upload-Length": "1", "X-Forwarded-Host": "evil.example",
                                                    "Origin": "https://app.example"})
    assert r.headers["location"].startswith(server.url + "/files/")
    assert "access-control-allow-origin" not in r.headers  # CORS is off by default


def test_expired_upload_is_gone(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--no-auth", env={"CHUNKD_TUS_EXPIRATION": "1.5", "CHUNKD_SWEEP_INTERVAL": "0.5"})
    try:
        with httpx.Client(base_url=server.url) as c:
            r = c.post("/files/", headers={**TUS, "Upload-Length": "10"})
            url = httpx.URL(r.headers["location"]).path
            expires = r.headers["upload-expires"]
            assert patch(c, url, 0, b"12345").headers["upload-expires"] >= expires
            time.sleep(2.5)
            head = c.head(url, headers=TUS)
            assert head.status_code == 410 and "upload-offset" not in head.headers
            assert patch(c, url, 5, b"67890").status_code == 410
            done = httpx.URL(c.post("/files/", headers={**TUS, "Upload-Length": "2"}).headers["location"]).path
            assert patch(c, done, 0, b"ok").status_code == 204
            assert c.get(done).content == b"ok"
            time.sleep(2.5)  # a finished upload stays addressable for the expiration time after finishing
            assert c.get(done).status_code == 410
    finally:
        server.stop()


class _Receiver(BaseHTTPRequestHandler):
    events: list[dict[str, Any]] = []
    calls = 0

    def do_POST(self) -> None:
        type(self).calls += 1
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if type(self).calls % 3 == 1:  # every third delivery attempt fails first: retries must cover it
            self.send_response(503)
        else:
            type(self).events.append(json.loads(body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.events, _Receiver.calls = [], 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    httpd.shutdown()
    httpd.server_close()


def test_webhooks_report_lifecycle_with_retries(tmp_path: Path, receiver: str) -> None:
    server = start_server(tmp_path, "--no-auth", env={"CHUNKD_WEBHOOK_URLS": receiver, "CHUNKD_WEBHOOK_BACKOFF": "0.05",
                                                      "CHUNKD_WEBHOOK_EVENTS": "*"})
    try:
        with httpx.Client(base_url=server.url) as c:
            created = c.post("/files/", headers={**TUS, "Upload-Length": "6", "Upload-Metadata": "filename YS50eHQ="})
            url = httpx.URL(created.headers["location"]).path
            patch(c, url, 0, b"abc")
            patch(c, url, 3, b"def")
            other = httpx.URL(c.post("/files/", headers={**TUS, "Upload-Length": "6"}).headers["location"]).path
            c.delete(other, headers=TUS)
        upload_id, other_id = url.rsplit("/", 1)[1], other.rsplit("/", 1)[1]
        deadline = time.monotonic() + 10
        wanted = {(upload_id, "created"), (upload_id, "progress"), (upload_id, "completed"), (upload_id, "committed"),
                  (other_id, "created"), (other_id, "deleted")}
        while time.monotonic() < deadline:
            seen = {(e["upload"]["id"], e["event"]) for e in _Receiver.events}
            if wanted <= seen:
                break
            time.sleep(0.1)
        assert wanted <= seen
        done = next(e for e in _Receiver.events if e["event"] == "committed")
        assert done["upload"]["family"] == "tus" and done["upload"]["offset"] == 6
        assert done["upload"]["metadata"] == {"filename": "a.txt"}
        assert _Receiver.calls > len(_Receiver.events)  # some deliveries were retried
    finally:
        server.stop()
