"""`chunkd serve` flags reach every worker's settings."""

from __future__ import annotations

from datetime import datetime

import httpx


def test_max_size_and_session_ttl_flags(serve) -> None:
    server = serve("--max-size", "100", "--session-ttl", "7", "--no-durable")
    headers = {"Authorization": f"Bearer {server.token()}"}
    options = httpx.options(f"{server.url}/files/")
    assert options.headers["Tus-Max-Size"] == "100"
    too_big = httpx.put(f"{server.url}/ImageStore/big.bin/$/UploadChunk?api-version=6.0"
                        "&session-id=4a2340e8-d8d8-497c-95fe-cdaa1052f33b",
                        headers={**headers, "Content-Range": "bytes 0-9/1000"}, content=b"0123456789")
    assert too_big.status_code == 413 and too_big.json()["Error"]["Code"] == "FABRIC_E_VALUE_TOO_LARGE"
    created = httpx.post(f"{server.url}/files/", headers={**headers, "Tus-Resumable": "1.0.0", "Upload-Length": "10"})
    assert created.status_code == 201
    head = httpx.head(httpx.URL(server.url).join(created.headers["Location"]),
                      headers={**headers, "Tus-Resumable": "1.0.0"})
    assert head.status_code == 200 and head.headers["Upload-Offset"] == "0"
    sid = "5b3340e8-d8d8-497c-95fe-cdaa1052f33b"  # a Service Fabric session lives --session-ttl seconds
    chunk = httpx.put(f"{server.url}/ImageStore/small.bin/$/UploadChunk?api-version=6.0&session-id={sid}",
                      headers={**headers, "Content-Range": "bytes 0-9/20"}, content=b"0123456789")
    assert chunk.status_code == 200, chunk.text
    shown = httpx.get(f"{server.url}/chunkd/v1/sessions/{sid}", headers=headers).json()
    lifetime = datetime.fromisoformat(shown["expiresAt"]) - datetime.fromisoformat(shown["modifiedAt"])
    assert 6 <= lifetime.total_seconds() <= 8, shown
