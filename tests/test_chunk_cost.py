"""What an acknowledged chunk costs, per family, on PostgreSQL: at most 2 metadata transactions and 1
data flush (Service Fabric UploadChunk, a Graph uploadUrl segment, a Blob Put Block, a tus PATCH).

The server runs in this process (httpx drives the real ASGI app, lifespan included) so the store's own
transaction counter can be read. Write transactions are counted independently, on the
database: ``pg_snapshot_xmax(pg_current_snapshot())`` moves once per transaction that writes (the
statistics counters lag by seconds). Other activity on the same PostgreSQL cluster can only add to that
figure, so the smallest of several chunks is compared. Flushes are the fdatasync/fsync calls made while
the chunk is served.
"""

from __future__ import annotations

import base64
import os
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chunkd.server.app import create_app
from chunkd.settings import Settings
from tests.conformance.metadata_suite import PG_ADMIN, pg_url

CHUNK = 64 << 10
CHUNKS = 6  # the first opens the session (not measured), the rest are what is measured


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    try:
        import psycopg

        admin = psycopg.connect(PG_ADMIN, autocommit=True)
    except Exception as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is required in CI: {exc}")
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}")
    name = f"chunkd_cost_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield name
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Meter:
    """Counts transactions (the store's counter and PostgreSQL's write-transaction id) and flushes."""

    def __init__(self, store: Any, db: str, monkeypatch: pytest.MonkeyPatch) -> None:
        import psycopg

        self.store = store
        self.pg = psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={db}", autocommit=True)
        self.flushes = 0
        lock = threading.Lock()
        for name in ("fdatasync", "fsync"):
            real = getattr(os, name)

            def counted(fd: int, _real: Callable[[int], None] = real) -> None:
                with lock:
                    self.flushes += 1
                _real(fd)

            monkeypatch.setattr(os, name, counted)

    def xmax(self) -> int:
        row = self.pg.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint").fetchone()
        assert row is not None
        return int(row[0])

    async def cost(self, request: Callable[[], Awaitable[None]]) -> tuple[int, int, int]:
        """(write transactions, all transactions, flushes) of one request."""
        x0, t0, f0 = self.xmax(), self.store.transactions, self.flushes
        await request()
        x1, t1, f1 = self.xmax(), self.store.transactions, self.flushes
        return x1 - x0, t1 - t0, f1 - f0


Served = tuple[httpx.AsyncClient, Meter]


@pytest.fixture
async def served(tmp_path: Path, database: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    settings = Settings(data_dir=tmp_path / "data", metadata=pg_url(database), no_auth=True, sweep_interval=3600)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:19080") as client:
            meter = Meter(app.state.components.engine.store, database, monkeypatch)
            try:
                yield client, meter
            finally:
                meter.pg.close()


def check(costs: list[tuple[int, int, int]]) -> None:
    writes = min(c[0] for c in costs)  # other users of the cluster can only add
    assert 1 <= writes <= 2, costs
    assert max(c[1] for c in costs) <= 2, costs
    assert max(c[2] for c in costs) <= 1, costs


@pytest.mark.anyio
async def test_service_fabric_upload_chunk(served: Served) -> None:
    client, meter = served
    sid, data = str(uuid.uuid4()), os.urandom(CHUNK * CHUNKS)
    url = f"/ImageStore/cost/file.bin/$/UploadChunk?api-version=6.0&session-id={sid}"

    async def put(i: int) -> None:
        r = await client.put(url, content=data[i * CHUNK:(i + 1) * CHUNK],
                       headers={"Content-Range": f"bytes {i * CHUNK}-{(i + 1) * CHUNK - 1}/{len(data)}"})
        assert r.status_code == 200, r.text

    await put(0)
    check([await meter.cost(lambda i=i: put(i)) for i in range(1, CHUNKS)])


@pytest.mark.anyio
async def test_tus_patch(served: Served) -> None:
    client, meter = served
    data = os.urandom(CHUNK * (CHUNKS + 1))
    r = await client.post("/files/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(len(data))})
    assert r.status_code == 201, r.text
    path = r.headers["location"]

    async def patch(i: int) -> None:
        r = await client.patch(path, content=data[i * CHUNK:(i + 1) * CHUNK],
                         headers={"Tus-Resumable": "1.0.0", "Upload-Offset": str(i * CHUNK),
                                  "Content-Type": "application/offset+octet-stream"})
        assert r.status_code == 204, r.text

    await patch(0)
    check([await meter.cost(lambda i=i: patch(i)) for i in range(1, CHUNKS)])


@pytest.mark.anyio
async def test_graph_upload_url_segment(served: Served) -> None:
    client, meter = served
    r = await client.post("/v1.0/print/printers", json={"displayName": "cost"})
    assert r.status_code in (200, 201), r.text
    printer = r.json()["id"]
    job = (await client.post(f"/v1.0/print/printers/{printer}/jobs", json={"configuration": {}})).json()
    doc = f"/v1.0/print/printers/{printer}/jobs/{job['id']}/documents/{job['documents'][0]['id']}"
    data = os.urandom(CHUNK * (CHUNKS + 1))
    r = await client.post(doc + "/createUploadSession", json={"properties": {
        "documentName": "cost.pdf", "contentType": "application/pdf", "size": len(data)}})
    assert r.status_code == 200, r.text
    upload = r.json()["uploadUrl"]

    async def put(i: int) -> None:
        r = await client.put(upload, content=data[i * CHUNK:(i + 1) * CHUNK],
                       headers={"Content-Range": f"bytes {i * CHUNK}-{(i + 1) * CHUNK - 1}/{len(data)}"})
        assert r.status_code == 202, r.text

    await put(0)
    check([await meter.cost(lambda i=i: put(i)) for i in range(1, CHUNKS)])


@pytest.mark.anyio
async def test_blob_put_block(served: Served) -> None:
    client, meter = served
    r = await client.post("/beta/external/industryData/dataConnectors", json={
        "@odata.type": "#microsoft.graph.industryData.azureDataLakeConnector", "displayName": "cost"})
    assert r.status_code == 201, r.text
    conn = r.json()["id"]
    session = (await client.get(f"/beta/external/industryData/dataConnectors/{conn}/"
                                "microsoft.graph.industryData.azureDataLakeConnector/getUploadSession")).json()
    container, _, sas = session["sessionUrl"].partition("?")
    data = os.urandom(CHUNK)

    async def put(i: int) -> None:
        block = base64.b64encode(f"block-{i:06d}".encode()).decode()
        r = await client.put(f"{container}/cost.csv?{sas}&comp=block&blockid={block}", content=data,
                       headers={"x-ms-version": "2025-11-05"})
        assert r.status_code == 201, r.text

    await put(0)
    check([await meter.cost(lambda i=i: put(i)) for i in range(1, CHUNKS)])
