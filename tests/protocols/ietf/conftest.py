"""Fixtures for the IETF resumable-upload draft tests: one real ``chunkd serve`` process (bearer-token auth, as
for tus) shared by the package, and helpers that speak one interop version."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.serverproc import ServerProcess

MAX_SIZE = 8 << 20
VERSIONS = [3, 4, 5, 6, 7, 8]
PARTIAL = "application/partial-upload"
PROBLEM = "https://iana.org/assignments/http-problem-types#"


def start_server(root: Path, env: dict[str, str] | None = None) -> ServerProcess:
    proc = ServerProcess(root / "data", [], {"CHUNKD_TUS_MAX_SIZE": str(MAX_SIZE), **(env or {})})
    return proc.start(timeout=120)  # generous: a loaded 2-core CI machine starts slowly


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path_factory.mktemp("ietf"))
    yield proc
    proc.stop()


@pytest.fixture(scope="package")
def token(server: ServerProcess) -> str:
    return server.token()


@pytest.fixture(scope="package")
def client(server: ServerProcess, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": "Bearer " + token}) as c:
        yield c


@dataclass
class Draft:
    """Requests in one interop version: the version header, the completeness field (interop 3's
    ``Upload-Incomplete`` is inverted) and the append media type where the version requires it."""

    client: httpx.Client
    version: int

    @property
    def field(self) -> str:
        return "upload-incomplete" if self.version == 3 else "upload-complete"

    def flag(self, complete: bool) -> str:
        return "?1" if complete != (self.version == 3) else "?0"

    def headers(self, complete: bool | None = None, **extra: str) -> dict[str, str]:
        h = {"upload-draft-interop-version": str(self.version)}
        if complete is not None:
            h[self.field] = self.flag(complete)
        h.update({k.replace("_", "-"): v for k, v in extra.items()})
        return h

    def create(self, body: bytes = b"", complete: bool = False, method: str = "POST", **extra: str) -> httpx.Response:
        return self.client.request(method, "/files/", headers=self.headers(complete, **extra), content=body)

    def new(self, body: bytes = b"", complete: bool = False, **extra: str) -> str:
        r = self.create(body, complete, **extra)
        assert r.status_code == 201, r.text
        return httpx.URL(r.headers["location"]).path

    def append(self, path: str, offset: int, body: bytes, complete: bool | None = False,
               **extra: str) -> httpx.Response:
        h = self.headers(complete, upload_offset=str(offset))
        if self.version >= 6:
            h["content-type"] = PARTIAL
        h.update({k.replace("_", "-"): v for k, v in extra.items()})
        return self.client.patch(path, headers=h, content=body)

    def head(self, path: str, **extra: str) -> httpx.Response:
        return self.client.head(path, headers=self.headers(None, **extra))

    def offset(self, path: str) -> int:
        r = self.head(path)
        assert r.status_code == 204, r.text
        return int(r.headers["upload-offset"])


@pytest.fixture(params=VERSIONS, ids=lambda v: f"interop{v}")
def draft(request: pytest.FixtureRequest, client: httpx.Client) -> Draft:
    return Draft(client, request.param)
