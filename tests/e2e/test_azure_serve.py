"""``chunkd serve --storage azure://...`` on a real Azurite: a Service Fabric upload (chunks out of order)
and a tus upload in 64 KiB PATCHes land as blobs in the container, read back byte for byte, and the
data directory holds no object bytes (only the metadata database and keys)."""

from __future__ import annotations

import hashlib
import os
import random
import secrets
import uuid
from pathlib import Path

import httpx
import pytest
from azure.storage.blob import ContainerClient

from tests import azurite
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.slow


def test_service_fabric_and_tus_uploads_live_in_azure(tmp_path: Path) -> None:
    container = f"e2e{secrets.token_hex(4)}"
    server = ServerProcess(tmp_path / "data", ["--storage", azurite.storage_url(container, "node")],
                           {"AZURE_STORAGE_KEY": azurite.KEY}).start(timeout=60)
    try:
        token = server.token()
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.url, headers=auth, timeout=60) as client:
            sf = _service_fabric(client, os.urandom(5 * 1024 * 1024 + 777))
            tus = _tus(client, os.urandom(3 * 1024 * 1024 + 99))
    finally:
        server.stop()
    assert " 500 " not in server.log() and "Traceback" not in server.log()
    with ContainerClient(azurite.endpoint(), container,
                         credential={"account_name": azurite.ACCOUNT, "account_key": azurite.KEY}) as c:
        blobs = {b.name: b.size for b in c.list_blobs(name_starts_with="node/objects/")}
        assert blobs.get("node/objects/imagestore/app/pkg.bin") == len(sf)
        assert len(tus) in blobs.values()
        got = c.get_blob_client("node/objects/imagestore/app/pkg.bin").download_blob().readall()
        assert hashlib.sha256(got).digest() == hashlib.sha256(sf).digest()
        staged = list(c.list_blobs(name_starts_with="node/staging/", include=["uncommittedblobs"]))
        assert staged == []  # committed sessions leave nothing staged
    stored = sum(p.stat().st_size for p in (tmp_path / "data").rglob("*") if p.is_file())
    assert stored < 2 * 1024 * 1024, "object bytes were written to the data directory"
    assert not any(p.is_file() for p in (tmp_path / "data" / "store").rglob("*"))


def _service_fabric(client: httpx.Client, data: bytes) -> bytes:
    chunk = 1024 * 1024
    sid = str(uuid.uuid4())
    spans = [(i, min(i + chunk, len(data))) for i in range(0, len(data), chunk)]
    random.shuffle(spans)
    for start, end in spans:
        r = client.put(f"/ImageStore/app/pkg.bin/$/UploadChunk?api-version=6.0&session-id={sid}",
                       content=data[start:end], headers={"Content-Range": f"bytes {start}-{end - 1}/{len(data)}"})
        assert r.status_code == 200, r.text
    r = client.post(f"/ImageStore/$/CommitUploadSession?api-version=6.0&session-id={sid}")
    assert r.status_code == 200, r.text
    body = client.get("/ImageStore/app/pkg.bin/$/Content?api-version=6.0").content
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()
    ranged = client.get("/ImageStore/app/pkg.bin/$/Content?api-version=6.0", headers={"Range": "bytes=1000-1999"})
    assert ranged.status_code == 206 and ranged.content == data[1000:2000]
    return data


def _tus(client: httpx.Client, data: bytes) -> bytes:
    tus = {"Tus-Resumable": "1.0.0"}
    r = client.post("/files/", headers={**tus, "Upload-Length": str(len(data))})
    assert r.status_code == 201, r.text
    url = r.headers["Location"]
    step = 64 * 1024
    for offset in range(0, len(data), step):
        r = client.patch(url, content=data[offset:offset + step], headers={
            **tus, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})
        assert r.status_code == 204, r.text
    body = client.get(url, headers=tus).content
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()
    return data
