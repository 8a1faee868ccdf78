"""Shared steps of the Industry Data and blob tests: a module-scoped server, connectors, upload sessions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from tests.serverproc import ServerProcess

BETA = "/beta/external/industryData"
CONNECTOR = "#microsoft.graph.industryData.azureDataLakeConnector"
GET_SESSION = "microsoft.graph.industryData.azureDataLakeConnector/getUploadSession"


def start_server(tmp_path_factory: pytest.TempPathFactory, *args: str) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("idsrv") / "data"
    server = ServerProcess(data, list(args))
    try:
        server.start(timeout=60)
    except RuntimeError:  # on a busy machine another process may take the free port first: try another one
        server.stop()
        server = ServerProcess(data, list(args)).start(timeout=60)
    try:
        yield server
    finally:
        server.stop()


def create_connector(base: str, headers: dict[str, str] | None = None, **fields: Any) -> dict[str, Any]:
    body = {"@odata.type": CONNECTOR, "displayName": "SDS upload", **fields}
    r = httpx.post(base + BETA + "/dataConnectors", json=body, headers=headers or {})
    assert r.status_code == 201, r.text
    return dict(r.json())


def upload_session(base: str, connector_id: str, *, reset: bool = False,
                   headers: dict[str, str] | None = None) -> dict[str, Any]:
    url = f"{base}{BETA}/dataConnectors/{connector_id}/{GET_SESSION}" + ("?resetSession=true" if reset else "")
    r = httpx.get(url, headers=headers or {})
    assert r.status_code == 200, r.text
    return dict(r.json())


def new_session_url(base: str) -> str:
    return str(upload_session(base, create_connector(base)["id"])["sessionUrl"])


def split_sas(url: str) -> tuple[str, dict[str, str]]:
    """(container URL without query, SAS parameters decoded)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}", dict(parse_qsl(parts.query))


def data_dir(server: ServerProcess) -> Path:
    return server.data_dir
