"""Configured lifetimes: the SAS ends with the session, the container (and its blobs) with the container."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl

import httpx

from chunkd.auth import sas
from tests.protocols.industry_data.helpers import BETA, create_connector, split_sas, upload_session
from tests.serverproc import ServerProcess

PUT = {"x-ms-blob-type": "BlockBlob", "x-ms-version": "2025-11-05"}


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_session_and_container_expire(tmp_path: Path) -> None:
    env = {"CHUNKD_INDUSTRY_SESSION_TTL": "2", "CHUNKD_INDUSTRY_CONTAINER_TTL": "4"}
    server = ServerProcess(tmp_path / "data", ["--no-auth"], env).start()
    try:
        conn = create_connector(server.url)["id"]
        first = upload_session(server.url, conn)
        span = _iso(first["containerExpirationDateTime"]) - _iso(first["sessionExpirationDateTime"])
        assert timedelta(seconds=1.5) < span < timedelta(seconds=2.5)
        url, q = split_sas(first["sessionUrl"])
        assert httpx.put(f"{url}/orgs.csv", params=q, headers=PUT, content=b"a\n").status_code == 201
        assert httpx.post(f"{server.url}{BETA}/dataConnectors/{conn}/validate").status_code == 202
        # validated files stay readable (with a freshly signed SAS) until the container expires
        key = sas.load_or_create_account_key(server.data_dir)
        forged = dict(parse_qsl(sas.sign_container_sas(key, "chunkd", first["containerId"], permissions="rl",
                                                       expiry=datetime.now(UTC) + timedelta(hours=1))))
        listing = {**forged, "restype": "container", "comp": "list"}
        assert "<Name>orgs.csv</Name>" in httpx.get(url, params=listing).text
        second = upload_session(server.url, conn)
        url2, q2 = split_sas(second["sessionUrl"])
        time.sleep(2.2)
        r = httpx.put(f"{url2}/late.csv", params=q2, headers=PUT, content=b"a\n")
        assert (r.status_code, r.headers["x-ms-error-code"]) == (403, "AuthenticationFailed")  # the SAS ended
        assert upload_session(server.url, conn)["containerId"] not in (first["containerId"], second["containerId"])
        time.sleep(max(0.0, (_iso(first["containerExpirationDateTime"]) - datetime.now(UTC)).total_seconds()) + 0.3)
        upload_session(server.url, conn)  # sweeps the connector's expired containers
        r = httpx.get(url, params=listing)
        assert (r.status_code, r.headers["x-ms-error-code"]) == (404, "ContainerNotFound")
        assert not list((server.data_dir / "objects" / "blob").glob(f"{first['containerId']}/*"))
    finally:
        server.stop()
