"""Staged blocks and blobs survive a SIGKILL of the server; the endpoint works on PostgreSQL metadata too."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from azure.storage.blob import ContainerClient

from tests.conformance.metadata_suite import pg_database, pg_url  # noqa: F401  (fixture)
from tests.protocols.industry_data.helpers import BETA, create_connector, split_sas, upload_session
from tests.serverproc import ServerProcess

PUT = {"x-ms-blob-type": "BlockBlob", "x-ms-version": "2025-11-05"}


def _moved(url: str, server: ServerProcess) -> str:
    """The same container URL on the restarted server's port (the SAS does not sign the host)."""
    return server.url + urlsplit(url).path


def test_staged_blocks_and_blobs_survive_sigkill(serve: Callable[..., ServerProcess], tmp_path: Path) -> None:
    server = serve("--no-auth")
    conn = create_connector(server.url)["id"]
    url, q = split_sas(upload_session(server.url, conn)["sessionUrl"])
    csv = b"sourcedId,name\n1,North\n"
    assert httpx.put(f"{url}/orgs.csv", params=q, headers=PUT, content=csv).status_code == 201
    blocks = [os.urandom(300_000) for _ in range(3)]
    ids = [base64.b64encode(f"blk{i}".encode()).decode() for i in range(3)]
    for bid, data in zip(ids, blocks, strict=True):
        r = httpx.put(f"{url}/big.bin", params={**q, "comp": "block", "blockid": bid}, content=data)
        assert r.status_code == 201
    server.kill()
    again = serve("--no-auth", data_dir=server.data_dir)
    url = _moved(url, again)
    assert httpx.get(f"{url}/orgs.csv", params=q).content == csv
    listing = httpx.get(f"{url}/big.bin", params={**q, "comp": "blocklist", "blocklisttype": "uncommitted"})
    assert listing.status_code == 200 and all(bid in listing.text for bid in ids)
    body = "<BlockList>" + "".join(f"<Latest>{b}</Latest>" for b in reversed(ids)) + "</BlockList>"
    assert httpx.put(f"{url}/big.bin", params={**q, "comp": "blocklist"}, content=body.encode()).status_code == 201
    got = httpx.get(f"{url}/big.bin", params=q).content
    assert hashlib.sha256(got).digest() == hashlib.sha256(b"".join(reversed(blocks))).digest()
    # the Graph side survived as well: the connector still has this session
    assert split_sas(upload_session(again.url, conn)["sessionUrl"])[0].endswith(urlsplit(url).path)


@pytest.mark.postgres
def test_sdk_upload_on_postgresql_metadata_and_two_workers(serve: Callable[..., ServerProcess],
                                                           pg_database: str) -> None:  # noqa: F811
    server = serve("--no-auth", "--metadata", pg_url(pg_database), "--workers", "2")
    conn = create_connector(server.url)["id"]
    session = upload_session(server.url, conn)
    container = ContainerClient.from_container_url(session["sessionUrl"], max_single_put_size=1 << 20,
                                                   max_block_size=1 << 20)
    data = os.urandom((5 << 20) + 7)
    container.get_blob_client("big.bin").upload_blob(data, max_concurrency=4)
    for name in ("orgs.csv", "users.csv", "roles.csv"):
        container.upload_blob(name, b"sourcedId,x\n1,y\n")
    assert sorted(b.name for b in container.list_blobs()) == ["big.bin", "orgs.csv", "roles.csv", "users.csv"]
    assert container.download_blob("big.bin", max_concurrency=3).readall() == data
    r = httpx.post(f"{server.url}{BETA}/dataConnectors/{conn}/validate")
    assert httpx.get(r.headers["Location"]).json()["errors"] == []
    assert "metadata=postgresql" in server.log()
