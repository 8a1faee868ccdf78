"""``chunkd serve --storage s3://...``: real server processes keep every byte in a (moto) bucket, none on disk."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from tests.conformance.s3moto import BUCKET, moto

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

SID = "5b0c7d3e-8f7a-4c55-9f0e-3d1c2b4a6e70"
MiB = 1 << 20
TUS = {"Tus-Resumable": "1.0.0"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_no_object_bytes(data_dir: Path, samples: list[bytes]) -> None:
    """Only the metadata database and keys live in the data directory: no staged or published bytes."""
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert files, "the server made no data directory at all"
    for path in files:
        content = path.read_bytes()
        for sample in samples:
            assert sample not in content, f"{path} holds uploaded bytes"
    assert not (data_dir / "store").exists() or not any((data_dir / "store").rglob("*.part"))


async def test_service_fabric_and_tus_uploads_live_in_the_bucket(serve, tmp_path: Path) -> None:
    url = moto().url()
    server = serve("--no-auth", "--storage", url)
    assert "storage=s3" in server.log()
    prefix = url.split("/", 3)[3].split("?", 1)[0]
    sf_data = os.urandom(13 * MiB)
    tus_data = os.urandom(9 * MiB + 12_345)
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
        # Service Fabric: chunks in any order, two of them large enough to be copied server-side at commit
        for start, end in [(6 * MiB, 12 * MiB), (12 * MiB, 13 * MiB), (0, 6 * MiB)]:
            r = await c.put(f"/ImageStore/app/pkg/code.zip/$/UploadChunk?api-version=6.0&session-id={SID}",
                            content=sf_data[start:end],
                            headers={"Content-Range": f"bytes {start}-{end - 1}/{len(sf_data)}"})
            assert r.status_code == 200, r.text
        r = await c.post(f"/ImageStore/$/CommitUploadSession?api-version=6.0&session-id={SID}")
        assert r.status_code == 200, r.text
        r = await c.get("/ImageStore/app/pkg/code.zip/$/Content?api-version=6.0")
        assert r.status_code == 200 and sha(r.content) == sha(sf_data)
        r = await c.get("/ImageStore/app/pkg/code.zip/$/Content?api-version=6.0",
                        headers={"Range": "bytes=7340032-7340131"})
        assert r.content == sf_data[7 * MiB:7 * MiB + 100]
        listing = (await c.get("/ImageStore/app/pkg?api-version=6.0")).json()
        assert [f["StoreRelativePath"] for f in listing["StoreFiles"]] == ["app\\pkg\\code.zip"]

        # tus: 64 KiB PATCHes, each one piece (one PUT), coalesced when the last one completes the upload
        r = await c.post("/files/", headers={**TUS, "Upload-Length": str(len(tus_data))})
        assert r.status_code == 201, r.text
        location = r.headers["location"]
        for offset in range(0, len(tus_data), 65536):
            r = await c.patch(location, content=tus_data[offset:offset + 65536],
                              headers={**TUS, "Upload-Offset": str(offset),
                                       "Content-Type": "application/offset+octet-stream"})
            assert r.status_code == 204, r.text
        r = await c.get(location)
        assert r.status_code == 200 and sha(r.content) == sha(tus_data)

    admin = moto().client()
    keys = [o["Key"] for page in admin.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
            for o in page.get("Contents", [])]
    assert f"{prefix}/objects/imagestore/app/pkg/code.zip" in keys
    assert not [k for k in keys if "/staging/" in k]  # committed sessions' pieces are discarded
    assert admin.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", []) == []
    assert_no_object_bytes(tmp_path / "data", [sf_data[:64], sf_data[-64:], tus_data[:64], tus_data[-64:]])

    # a second node (own data dir, CHUNKD_STORAGE) reads the same published bytes from the bucket
    other = serve("--no-auth", data_dir=tmp_path / "other", env={"CHUNKD_STORAGE": url})
    async with httpx.AsyncClient(base_url=other.url, timeout=60) as c:
        r = await c.get("/ImageStore/app/pkg/code.zip/$/Content?api-version=6.0")
        assert r.status_code == 200 and sha(r.content) == sha(sf_data)


async def test_unreachable_bucket_stops_the_server_with_a_clear_message(serve, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no-such-bucket"):
        serve("--no-auth", "--storage", moto().url().replace(BUCKET, "no-such-bucket"))


async def test_a_commit_that_died_after_publishing_is_assembled_again_on_the_retry(tmp_path: Path) -> None:
    from tests.serverproc import ServerProcess

    url, sid = moto().url(), "9d1c5a77-2b6e-4f0a-8c3d-1e2f3a4b5c6d"
    data = os.urandom(7 * MiB + 3)  # a piece copied server-side and a small one coalesced with its head
    chunk = f"/ImageStore/crash/pub.bin/$/UploadChunk?api-version=6.0&session-id={sid}"
    commit = f"/ImageStore/$/CommitUploadSession?api-version=6.0&session-id={sid}"
    data_dir = tmp_path / "data"
    crashing = ServerProcess(data_dir, ["--no-auth", "--storage", url], {"CHUNKD_FAULTS": "after-assemble:exit"})
    crashing.start()
    async with httpx.AsyncClient(base_url=crashing.url, timeout=60) as c:
        for start, end in [(6 * MiB, len(data)), (0, 6 * MiB)]:
            r = await c.put(chunk, content=data[start:end],
                            headers={"Content-Range": f"bytes {start}-{end - 1}/{len(data)}"})
            assert r.status_code == 200, r.text
        with pytest.raises(httpx.TransportError):
            await c.post(commit)
    assert crashing.proc is not None and crashing.proc.wait(10) == 86  # died at the fault point
    again = ServerProcess(data_dir, ["--no-auth", "--storage", url], port=crashing.port).start()
    try:
        async with httpx.AsyncClient(base_url=again.url, timeout=60) as c:
            assert (await c.post(commit)).status_code == 200
            r = await c.get("/ImageStore/crash/pub.bin/$/Content?api-version=6.0")
            assert r.status_code == 200 and sha(r.content) == sha(data)
    finally:
        again.stop()
    prefix = url.split("/", 3)[3].split("?", 1)[0]
    admin = moto().client()
    assert admin.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/staging/").get("KeyCount") == 0
    assert admin.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", []) == []
