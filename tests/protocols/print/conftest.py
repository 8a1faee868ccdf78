"""Fixtures for the Graph Universal Print tests: one real ``chunkd serve`` for the whole package (every test
uses fresh jobs), a printer registered through the admin route, and tokens signed with the server's own key
(as ``chunkd token`` does, without a subprocess per token)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from chunkd.auth.tokens import DEFAULT_TENANT, issue_token, load_or_create_secret
from tests.serverproc import ServerProcess

MAX_SIZE = 64 << 20
ALICE, BOB = "a11ce000-0000-4000-8000-000000000001", "b0b00000-0000-4000-8000-000000000002"


def add_printer(data_dir: Path, name: str = "Office", *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "chunkd.cli.main", "printers", "add", name, "--data-dir",
                          str(data_dir), *args], check=True, capture_output=True, text=True)
    return out.stdout.split()[-1]


@dataclass
class PrintEnv:
    server: ServerProcess
    printer: str
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.server.url, timeout=60)
        self._secret = load_or_create_secret(self.server.data_dir)

    def token(self, *, user: str = "", scopes: str = "", roles: str = "", app: str = "app-1",
              tenant: str = DEFAULT_TENANT) -> str:
        return issue_token(self._secret, tenant=tenant, user=user, app=app, scopes=scopes.split() or None,
                           roles=roles.split() or None)

    def auth(self, **kw: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(**kw)}"}

    def user(self, who: str, scopes: str) -> dict[str, str]:
        return self.auth(user=who, scopes=scopes)

    def jobs_url(self, version: str = "v1.0", printer: str | None = None) -> str:
        return f"/{version}/print/printers/{printer or self.printer}/jobs"

    def new_job(self, headers: dict[str, str]) -> tuple[str, str, str]:
        """A new job: (job id, document id, document URL)."""
        r = self.client.post(self.jobs_url(), json={"configuration": {"copies": 1}}, headers=headers)
        assert r.status_code == 201, r.text
        job = r.json()
        doc = job["documents"][0]["id"]
        return job["id"], doc, f"{self.jobs_url()}/{job['id']}/documents/{doc}"

    def open_seed_session(self, doc_url: str, headers: dict[str, str], size: int,
                          content_type: str = "application/pdf") -> httpx.Response:
        return self.client.put(doc_url + "/uploadSession", headers=headers,
                               json={"size": size, "contentType": content_type, "documentName": "f.pdf"})

    def upload_all(self, doc_url: str, headers: dict[str, str], data: bytes) -> None:
        r = self.open_seed_session(doc_url, headers, len(data))
        assert r.status_code == 200, r.text
        r = self.client.post(doc_url + "/uploadSession/$value", headers={
            **headers, "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"}, content=data)
        assert r.status_code == 201, r.text


def start(root: Path, env: dict[str, str] | None = None) -> PrintEnv:
    """A server with one printer, registered through the admin route (the CLI has its own test)."""
    server = ServerProcess(root / "data", [], {"CHUNKD_MAX_SIZE": str(MAX_SIZE), **(env or {})}).start()
    e = PrintEnv(server, "")
    r = e.client.post("/v1.0/print/printers", json={"displayName": "Office"}, headers=e.auth(roles="Printers.Create"))
    assert r.status_code == 201, r.text
    e.printer = r.json()["id"]
    return e


@pytest.fixture(scope="package")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrintEnv]:
    e = start(tmp_path_factory.mktemp("print"))
    yield e
    e.client.close()
    e.server.stop()


def graph_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert a Graph error response and return its ``error`` object."""
    assert r.status_code == status, (r.status_code, r.text)
    err = r.json()["error"]
    assert err["code"] == code, r.text
    assert err["message"]
    assert err["innerError"]["request-id"] == r.headers["request-id"]
    assert err["innerError"]["date"]
    return dict(err)
