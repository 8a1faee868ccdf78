"""Logs, the access log and the health endpoints of a real ``chunkd serve`` process."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid

import httpx
import pytest

from chunkd.server.access_log import redact_query
from tests.conformance.metadata_suite import PG_ADMIN, pg_url

TUS = {"Tus-Resumable": "1.0.0"}


def _json_lines(log: str) -> list[dict[str, object]]:
    """Every stderr line that is a JSON object; any other line starting with '{' fails the test."""
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def _wait_for(server, needle: str) -> str:
    deadline = time.monotonic() + 10
    while needle not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)  # a line is written when its request ends, just after the client has the answer
    return server.log()


def test_json_access_log_redacts_credentials_and_names_principal_and_request_id(serve) -> None:
    # two workers: uvicorn applies the logging configuration in each spawned process too
    server = serve("--access-log", "--log-format", "json", "--workers", "2")
    headers = {"Authorization": f"Bearer {server.token()}", **TUS}
    created = httpx.post(f"{server.url}/files/?note=1", content=b"hello",
                         headers={**headers, "Upload-Length": "5", "Content-Type": "application/offset+octet-stream"})
    assert created.status_code == 201, created.text
    sas = httpx.get(f"{server.url}/chunkd/c1/a.csv?sv=2021-08-06&sp=racwl&sig=SECRETSIG%2Bx%3D&se=2030-01-01")
    graph = httpx.put(f"{server.url}/print-upload/abc?tempauthtoken=SECRETTEMPAUTH",
                      headers={"Content-Range": "bytes 0-0/1"}, content=b"x")
    other = httpx.get(f"{server.url}/healthz?access_token=SECRETACCESS&x=eyJhbGciOiJIUzI1NiJ9.e30.sig")
    log = _wait_for(server, "/healthz?")
    assert "SECRET" not in log and "eyJhbGci" not in log, log
    access = {str(e["path"]).split("?")[0]: e for e in _json_lines(log) if e["logger"] == "chunkd.access"}

    pids = {e["pid"] for e in _json_lines(log) if e["logger"] == "chunkd.access"}
    assert pids and server.proc is not None and server.proc.pid not in pids  # written by the workers
    post = access["/files/"]
    assert post["method"] == "POST" and post["status"] == 201 and post["bytes_in"] == 5
    assert str(post["principal"]).startswith("app:") and post["request_id"] == created.headers["x-request-id"]
    assert post["path"] == "/files/?note=1" and float(str(post["duration_ms"])) >= 0
    blob = access["/chunkd/c1/a.csv"]
    assert "sig=REDACTED" in str(blob["path"]) and "sp=racwl" in str(blob["path"])
    assert blob["status"] == sas.status_code and blob["request_id"] == sas.headers["x-ms-request-id"]
    assert blob["principal"] == "-" and blob["bytes_out"] == len(sas.content)
    up = access["/print-upload/abc"]
    assert up["path"] == "/print-upload/abc?tempauthtoken=REDACTED" and up["status"] == graph.status_code
    assert up["request_id"] == graph.headers["request-id"] and graph.status_code >= 400  # counted: bytes read
    assert access["/healthz"]["path"] == "/healthz?access_token=REDACTED&x=REDACTED" and other.status_code == 200
    # the finished tus upload is committed: the core says so
    assert any(e["logger"] == "chunkd.engine" and "committed tus session" in str(e["message"])
               for e in _json_lines(log)), log


def test_healthz_readyz_and_readyz_503_when_the_byte_store_is_gone(serve, tmp_path) -> None:
    server = serve("--access-log", "--tus-expiration", "1", "--sweep-interval", "0.3", data_dir=tmp_path / "data")
    made = httpx.post(f"{server.url}/files/", headers={"Authorization": f"Bearer {server.token()}", **TUS,
                                                       "Upload-Length": "10"})
    assert made.status_code == 201  # left unfinished: the sweep expires it after 1 s, and logs it
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready",
                                                         "checks": {"metadata": "ok", "storage": "ok"}}
    # text format: one line per request with method, path and status
    log = _wait_for(server, '"GET /readyz" 200')
    assert 'chunkd.access: 127.0.0.1 "GET /healthz" 200 in=0 out=15 ' in log, log
    sid = made.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
    assert f"chunkd.engine: expired tus session {sid}" in _wait_for(server, "expired tus session"), server.log()
    # the staging directory becomes a file: no piece can be written (also as root, unlike chmod)
    staging = next(p for p in (tmp_path / "data").rglob("staging") if p.is_dir())
    shutil.rmtree(staging)
    staging.write_text("not a directory")
    time.sleep(1.1)  # past the reuse time of the last result
    broken = httpx.get(f"{server.url}/readyz")
    assert broken.status_code == 503, broken.text
    doc = broken.json()
    assert doc["status"] == "unavailable" and doc["checks"] == {"metadata": "ok", "storage": "failed"}
    assert doc["reason"].startswith("storage store: ") and str(tmp_path) not in doc["reason"]
    assert httpx.get(f"{server.url}/healthz").status_code == 200  # the process still answers
    assert "readiness: the storage store failed" in _wait_for(server, "readiness:")


@pytest.mark.postgres
def test_readyz_503_when_the_metadata_database_is_dropped(serve) -> None:
    try:
        import psycopg

        admin = psycopg.connect(PG_ADMIN, autocommit=True)
    except Exception as exc:  # as the other PostgreSQL tests: required in CI, skipped elsewhere
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is required in CI: {exc}")
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}")
    name = f"chunkd_readyz_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            server = serve("--metadata", pg_url(name))
            assert httpx.get(f"{server.url}/readyz").status_code == 200
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            time.sleep(1.1)  # past the reuse time of the last result
            broken = httpx.get(f"{server.url}/readyz", timeout=30)
            assert broken.status_code == 503, broken.text
            doc = broken.json()
            assert doc["checks"]["metadata"] == "failed" and doc["reason"].startswith("metadata store: ")
            assert name not in broken.text  # the detail goes to the log only
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_redact_query() -> None:
    assert redact_query("") == ""
    assert redact_query("a=1&sig=abc&SIG=d&b") == "a=1&sig=REDACTED&SIG=REDACTED&b"
    assert redact_query("X-Amz-Signature=1&X-Amz-Credential=2&x-amz-security-token=3") == \
        "X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&x-amz-security-token=REDACTED"
    assert redact_query("q=Bearer%20abc&r=basic+x&s=plain") == "q=REDACTED&r=REDACTED&s=plain"
    assert redact_query("comp=block&blockid=QUJD&session-id=5") == "comp=block&blockid=QUJD&session-id=5"
