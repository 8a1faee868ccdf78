"""A first end-to-end exchange with the Service Fabric front end over a real server process."""

from __future__ import annotations

import hashlib
import os

import httpx

SID = "4a2340e8-d8d8-497c-95fe-cdaa1052f33b"


def test_chunks_out_of_order_commit_and_read_back(serve) -> None:
    server = serve()
    headers = {"Authorization": f"Bearer {server.token()}"}
    data = os.urandom(300_000)
    pieces = [(200_000, 300_000), (0, 100_000), (100_000, 200_000)]
    with httpx.Client(base_url=server.url, headers=headers) as c:
        for start, end in pieces:
            r = c.put(f"/ImageStore/pkg/app.bin/$/UploadChunk?api-version=6.0&session-id={SID}",
                      content=data[start:end], headers={"Content-Range": f"bytes {start}-{end - 1}/{len(data)}"})
            assert r.status_code == 200, r.text
            if (start, end) == (200_000, 300_000):
                got = c.get(f"/ImageStore/$/GetUploadSession?api-version=6.0&session-id={SID}").json()
                assert got["UploadSessions"][0]["ExpectedRanges"] == [{"StartPosition": "0", "EndPosition": "199999"}]
        assert c.post(f"/ImageStore/$/CommitUploadSession?api-version=6.0&session-id={SID}").status_code == 200
        body = c.get("/ImageStore/pkg/app.bin/$/Content?api-version=6.0").content
        assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
        listing = c.get("/ImageStore/pkg?api-version=6.2").json()
        assert listing["StoreFiles"][0]["StoreRelativePath"] == "pkg\\app.bin"
        assert listing["StoreFiles"][0]["FileSize"] == str(len(data))
