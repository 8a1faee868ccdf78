"""Fixtures for the tus conformance tests: one real ``chunkd serve`` process shared by the package."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.serverproc import ServerProcess

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"
MAX_SIZE = 8 << 20


def start_server(root: Path, *args: str, env: dict[str, str] | None = None) -> ServerProcess:
    proc = ServerProcess(root / "data", list(args), {"CHUNKD_TUS_MAX_SIZE": str(MAX_SIZE), **(env or {})})
    return proc.start(timeout=120)  # generous: a loaded 2-core CI machine starts workers slowly


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path_factory.mktemp("tus"), "--no-auth")
    yield proc
    proc.stop()


@pytest.fixture(scope="package")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


Create = Callable[..., str]


@pytest.fixture
def create(client: httpx.Client) -> Create:
    """``create(length, **headers)`` -> the new upload's path (``/files/<id>``)."""

    def make(length: int | None = 100, headers: dict[str, str] | None = None, body: bytes = b"") -> str:
        h = {**TUS, **(headers or {})}
        if length is not None:
            h["Upload-Length"] = str(length)
        if body:
            h["Content-Type"] = OCTETS
        r = client.post("/files/", headers=h, content=body)
        assert r.status_code == 201, r.text
        return httpx.URL(r.headers["location"]).path

    return make


def patch(client: httpx.Client, path: str, offset: int, body: bytes, **headers: str) -> httpx.Response:
    h = {**TUS, "Content-Type": OCTETS, "Upload-Offset": str(offset)}
    h.update({k.replace("_", "-"): v for k, v in headers.items()})
    return client.patch(path, headers=h, content=body)


def offset_of(client: httpx.Client, path: str) -> int:
    r = client.head(path, headers=TUS)
    assert r.status_code == 200, r.status_code
    return int(r.headers["upload-offset"])
