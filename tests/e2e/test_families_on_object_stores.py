"""Every family on every object store, through a real ``chunkd serve --storage s3://|azure://``: Service
Fabric copy, listing, ranged read and delete; tus concatenation; Graph uploadUrl segments out of order;
Blob Put Block (out of order, a block re-staged), Put Block List, ranged Get Blob, List Blobs, Delete.
Nothing is assembled from the data directory: it holds no object bytes."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests import azurite
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.slow
KiB, MiB = 1 << 10, 1 << 20
TUS = {"Tus-Resumable": "1.0.0"}
V = {"x-ms-version": "2025-11-05"}


def _s3() -> tuple[str, dict[str, str]]:
    from tests.conformance.s3moto import moto

    return moto().url(f"families{secrets.token_hex(4)}"), {}


def _azure() -> tuple[str, dict[str, str]]:
    return azurite.storage_url(f"fam{secrets.token_hex(4)}"), {"AZURE_STORAGE_KEY": azurite.KEY}


STORES: dict[str, Callable[[], tuple[str, dict[str, str]]]] = {"azure": _azure, "s3": _s3}


@pytest.fixture(params=sorted(STORES))
def server(request: pytest.FixtureRequest, tmp_path: Path) -> ServerProcess:
    url, env = STORES[request.param]()
    node = ServerProcess(tmp_path / "data", ["--no-auth", "--storage", url], env).start(timeout=90)
    request.addfinalizer(node.stop)
    return node


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_service_fabric_content_operations(server: ServerProcess) -> None:
    data = os.urandom(3 * MiB + 17)
    with httpx.Client(base_url=server.url, timeout=60) as c:
        sid = str(uuid.uuid4())
        for a, b in [(2 * MiB, len(data)), (0, 2 * MiB)]:
            r = c.put(f"/ImageStore/apps/v1/code.bin/$/UploadChunk?api-version=6.0&session-id={sid}",
                      content=data[a:b], headers={"Content-Range": f"bytes {a}-{b - 1}/{len(data)}"})
            assert r.status_code == 200, r.text
        assert c.post(f"/ImageStore/$/CommitUploadSession?api-version=6.0&session-id={sid}").status_code == 200
        assert c.put("/ImageStore/apps/v1/manifest.xml?api-version=6.0", content=b"<m/>").status_code == 200
        copy = {"RemoteSource": "apps\\v1", "RemoteDestination": "apps\\v2", "SkipFiles": ["manifest.xml"]}
        assert c.post("/ImageStore/$/Copy?api-version=6.0", json=copy).status_code == 200
        listing = c.get("/ImageStore/apps?api-version=6.2").json()
        assert sorted(f["StoreRelativePath"] for f in listing["StoreFolders"]) == ["apps\\v1", "apps\\v2"]
        got = c.get("/ImageStore/apps/v2/code.bin/$/Content?api-version=6.0")
        assert sha(got.content) == sha(data)
        part = c.get("/ImageStore/apps/v2/code.bin/$/Content?api-version=6.0",
                     headers={"Range": "bytes=2097150-2097160"})
        assert part.status_code == 206 and part.content == data[2097150:2097161]
        assert c.get("/ImageStore/apps/v2/manifest.xml?api-version=6.0").status_code == 404  # skipped
        assert c.delete("/ImageStore/apps/v1?api-version=6.0").status_code == 200
        listing = c.get("/ImageStore/apps?api-version=6.2").json()
        assert [f["StoreRelativePath"] for f in listing["StoreFolders"]] == ["apps\\v2"]


def test_tus_concatenation(server: ServerProcess) -> None:
    parts = [os.urandom(n) for n in (700 * KiB, 1, 2 * MiB)]
    with httpx.Client(base_url=server.url, timeout=60) as c:
        urls = []
        for data in parts:
            r = c.post("/files/", headers={**TUS, "Upload-Length": str(len(data)), "Upload-Concat": "partial"})
            path = "/files/" + r.headers["location"].rsplit("/", 1)[1]
            for a in range(0, len(data), 256 * KiB):
                r = c.patch(path, content=data[a:a + 256 * KiB], headers={
                    **TUS, "Upload-Offset": str(a), "Content-Type": "application/offset+octet-stream"})
                assert r.status_code == 204, r.text
            urls.append(path)
        r = c.post("/files/", headers={**TUS, "Upload-Concat": "final;" + " ".join(urls)})
        assert r.status_code == 201, r.text
        got = c.get("/files/" + r.headers["location"].rsplit("/", 1)[1])
        assert sha(got.content) == sha(b"".join(parts))


def test_graph_upload_url_segments_out_of_order(server: ServerProcess) -> None:
    data = os.urandom(2 * MiB + 5)
    with httpx.Client(base_url=server.url, timeout=60) as c:
        printer = c.post("/v1.0/print/printers", json={"displayName": "p"}).json()["id"]
        job = c.post(f"/v1.0/print/printers/{printer}/jobs", json={"configuration": {}}).json()
        doc = f"/v1.0/print/printers/{printer}/jobs/{job['id']}/documents/{job['documents'][0]['id']}"
        upload = c.post(doc + "/createUploadSession", json={"properties": {
            "documentName": "d.pdf", "contentType": "application/pdf", "size": len(data)}}).json()["uploadUrl"]
        for a, b in [(MiB, len(data)), (0, MiB)]:
            r = httpx.put(upload, content=data[a:b], headers={"Content-Range": f"bytes {a}-{b - 1}/{len(data)}"})
            assert r.status_code in (201, 202), r.text
        assert r.status_code == 201
        assert sha(c.get(doc + "/$value").content) == sha(data)


def test_blob_blocks_lists_and_deletes(server: ServerProcess) -> None:
    blocks = [os.urandom(n) for n in (300 * KiB, 1, 1 * MiB)]
    ids = [base64.b64encode(f"b{i:04d}".encode()).decode() for i in range(3)]
    with httpx.Client(base_url=server.url, timeout=60) as c:
        conn = c.post("/beta/external/industryData/dataConnectors", json={
            "@odata.type": "#microsoft.graph.industryData.azureDataLakeConnector", "displayName": "x"}).json()["id"]
        url = c.get(f"/beta/external/industryData/dataConnectors/{conn}/"
                    "microsoft.graph.industryData.azureDataLakeConnector/getUploadSession").json()["sessionUrl"]
        container, _, sas = url.partition("?")
        stale = os.urandom(10)
        for i in (2, 0, 1):  # staged out of order; block 0 is staged twice, the second time wins
            body = stale if i == 0 else blocks[i]
            assert httpx.put(f"{container}/f.csv?{sas}&comp=block&blockid={ids[i]}", content=body,
                             headers=V).status_code == 201
        assert httpx.put(f"{container}/f.csv?{sas}&comp=block&blockid={ids[0]}", content=blocks[0],
                         headers=V).status_code == 201
        xml = "<BlockList>" + "".join(f"<Latest>{i}</Latest>" for i in ids) + "</BlockList>"
        r = httpx.put(f"{container}/f.csv?{sas}&comp=blocklist", content=xml.encode(), headers=V)
        assert r.status_code == 201, r.text
        whole = b"".join(blocks)
        assert sha(httpx.get(f"{container}/f.csv?{sas}", headers=V).content) == sha(whole)
        part = httpx.get(f"{container}/f.csv?{sas}", headers={**V, "Range": "bytes=307199-307300"})
        assert part.status_code == 206 and part.content == whole[307199:307301]
        listing = httpx.get(f"{container}?{sas}&restype=container&comp=list", headers=V).text
        assert "<Name>f.csv</Name>" in listing and f"<Content-Length>{len(whole)}</Content-Length>" in listing
        assert httpx.delete(f"{container}/f.csv?{sas}", headers=V).status_code == 202
        assert httpx.get(f"{container}/f.csv?{sas}", headers=V).status_code == 404
