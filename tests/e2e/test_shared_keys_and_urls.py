"""Stateless nodes: every node on one metadata store accepts the same tokens, upload URLs and SAS URLs
(the signing keys live in the store), and hands out URLs that begin with ``--public-url`` (or the
request's host, or the trusted proxy's) in every family."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from chunkd.auth.keys import load_or_create_key
from chunkd.auth.tokens import issue_token
from tests.conformance.metadata_suite import _truncate, pg_database, pg_url  # noqa: F401  (fixture)
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.slow
INDUSTRY = "/beta/external/industryData/dataConnectors"
CONNECTOR = {"@odata.type": "#microsoft.graph.industryData.azureDataLakeConnector", "displayName": "keys"}
GET_SESSION = "microsoft.graph.industryData.azureDataLakeConnector/getUploadSession"


def _empty(url: str, tmp: Path) -> None:
    from chunkd.metadata import open_store

    async def run() -> None:
        store = open_store(url, str(tmp))
        await store.migrate()
        await _truncate(store)
        await store.close()

    anyio.run(run)


def _token(data_dir: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "chunkd.cli.main", "token", "--data-dir", str(data_dir), *args],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


@pytest.mark.postgres
def test_nodes_on_one_metadata_store_share_their_keys(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    db = pg_url(request.getfixturevalue("pg_database"))
    _empty(db, tmp_path)
    a = ServerProcess(tmp_path / "a", ["--metadata", db]).start()
    b = ServerProcess(tmp_path / "b", ["--metadata", db]).start()
    try:
        # a token minted for the cluster (from a third directory) works on both nodes
        headers = {"Authorization": "Bearer " + _token(tmp_path / "cli", "--metadata", db)}
        for node in (a, b):
            assert httpx.get(f"{node.url}/chunkd/v1/sessions", headers=headers).status_code == 200
        # a print uploadUrl signed by one node is accepted by the other
        printer = httpx.post(f"{a.url}/v1.0/print/printers", json={"displayName": "p"}, headers=headers).json()["id"]
        job = httpx.post(f"{a.url}/v1.0/print/printers/{printer}/jobs", json={"configuration": {}},
                         headers=headers).json()
        doc = f"/v1.0/print/printers/{printer}/jobs/{job['id']}/documents/{job['documents'][0]['id']}"
        upload = httpx.post(f"{a.url}{doc}/createUploadSession", headers=headers, json={"properties": {
            "documentName": "d.pdf", "contentType": "application/pdf", "size": 4}}).json()["uploadUrl"]
        on_b = b.url + upload.split(a.url, 1)[1]
        r = httpx.put(on_b, content=b"%PDF", headers={"Content-Range": "bytes 0-3/4"})
        assert r.status_code == 201, r.text
        # an Industry Data SAS URL handed out by one node is accepted by the other
        conn = httpx.post(f"{b.url}{INDUSTRY}", json=CONNECTOR, headers=headers).json()["id"]
        url = httpx.get(f"{b.url}{INDUSTRY}/{conn}/{GET_SESSION}", headers=headers).json()["sessionUrl"]
        container, _, sas = url.partition("?")
        on_a = a.url + container.split(b.url, 1)[1]
        r = httpx.put(f"{on_a}/orgs.csv?{sas}", content=b"x", headers={"x-ms-blob-type": "BlockBlob"})
        assert r.status_code == 201, r.text
        # every node cached the same key for local tools
        assert (tmp_path / "a" / "keys" / "jwt-hs256.key").read_text() == \
            (tmp_path / "b" / "keys" / "jwt-hs256.key").read_text()
    finally:
        a.stop()
        b.stop()


def test_a_key_file_from_before_the_store_kept_keys_stays_valid(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old = load_or_create_key(data, "jwt-hs256")  # what an earlier chunkd left in the data directory
    token = issue_token(old, roles=["Chunkd.Admin"])
    server = ServerProcess(data, []).start()
    try:
        assert httpx.get(f"{server.url}/chunkd/v1/sessions",
                         headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        server.stop()


def _handed_out(server: ServerProcess, headers: dict[str, str] | None = None) -> list[str]:
    """The URLs each family hands out: tus Location, Graph uploadUrl, Industry Data sessionUrl."""
    h = headers or {}
    loc = httpx.post(f"{server.url}/files/", headers={**h, "Tus-Resumable": "1.0.0", "Upload-Length": "3"})
    printer = httpx.post(f"{server.url}/v1.0/print/printers", json={"displayName": "p"}, headers=h).json()["id"]
    job = httpx.post(f"{server.url}/v1.0/print/printers/{printer}/jobs", json={"configuration": {}},
                     headers=h).json()
    doc = f"/v1.0/print/printers/{printer}/jobs/{job['id']}/documents/{job['documents'][0]['id']}"
    upload = httpx.post(f"{server.url}{doc}/createUploadSession", headers=h, json={"properties": {
        "documentName": "d.pdf", "contentType": "application/pdf", "size": 4}}).json()["uploadUrl"]
    conn = httpx.post(f"{server.url}{INDUSTRY}", json=CONNECTOR, headers=h).json()["id"]
    session = httpx.get(f"{server.url}{INDUSTRY}/{conn}/{GET_SESSION}", headers=h).json()["sessionUrl"]
    return [loc.headers["location"], upload, session]


def test_every_family_hands_out_urls_under_the_public_url(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve("--no-auth", "--public-url", "https://uploads.example.com/chunkd/")
    urls = _handed_out(server, {"X-Forwarded-Host": "ignored.example"})
    assert all(u.startswith("https://uploads.example.com/chunkd/") for u in urls), urls


def test_forwarded_headers_count_only_with_trust_proxy(serve) -> None:  # type: ignore[no-untyped-def]
    trusting = serve("--no-auth", "--trust-proxy")
    proxied = {"X-Forwarded-Host": "lb.example:8443", "X-Forwarded-Proto": "https"}
    assert all(u.startswith("https://lb.example:8443/") for u in _handed_out(trusting, proxied))
    evil = {"X-Forwarded-Host": "evil.example/path?x"}  # not a host: ignored
    assert all(u.startswith(trusting.url + "/") for u in _handed_out(trusting, evil))
    plain = serve("--no-auth", data_dir=trusting.data_dir.parent / "plain")
    assert all(u.startswith(plain.url + "/") for u in _handed_out(plain, proxied))


def test_a_bad_public_url_is_refused_at_start(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "chunkd.cli.main", "serve", "--data-dir", str(tmp_path),
                          "--public-url", "ftp://x/?q=1"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--public-url" in out.stderr and "without a query" in out.stderr
