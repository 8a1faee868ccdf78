"""``chunkd serve --metadata postgresql://...``: a real server keeps its sessions in PostgreSQL."""

from __future__ import annotations

import os

import httpx
import pytest

from chunkd.metadata import open_store
from tests.conformance.metadata_suite import pg_database, pg_url  # noqa: F401  (fixture)

SID = "0c7d6a35-3c57-4bd3-9d5c-2d0a31e5f1aa"


@pytest.mark.postgres
@pytest.mark.anyio
async def test_serve_with_postgresql_metadata(serve, pg_database: str, tmp_path) -> None:  # noqa: F811
    server = serve("--no-auth", "--metadata", pg_url(pg_database))
    data = os.urandom(50_000)
    async with httpx.AsyncClient(base_url=server.url) as c:
        r = await c.put(f"/ImageStore/pg/file.bin/$/UploadChunk?api-version=6.0&session-id={SID}",
                        content=data[:20_000], headers={"Content-Range": f"bytes 0-19999/{len(data)}"})
        assert r.status_code == 200, r.text
        store = open_store(pg_url(pg_database), str(tmp_path))
        try:
            session = await store.get(SID)
            assert session is not None and session.received == 20_000 and session.key == "pg/file.bin"
            r = await c.put(f"/ImageStore/pg/file.bin/$/UploadChunk?api-version=6.0&session-id={SID}",
                            content=data[20_000:], headers={"Content-Range": f"bytes 20000-49999/{len(data)}"})
            assert r.status_code == 200, r.text
            r = await c.post(f"/ImageStore/$/CommitUploadSession?api-version=6.0&session-id={SID}")
            assert r.status_code == 200, r.text
            assert (await c.get("/ImageStore/pg/file.bin/$/Content?api-version=6.0")).content == data
            committed = await store.get(SID)
            assert committed is not None and committed.state.value == "committed"
        finally:
            await store.close()
    assert "metadata=postgresql" in server.log()
