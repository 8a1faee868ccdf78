"""What an acknowledged chunk costs, per family, on PostgreSQL: at most 2 metadata transactions and 1
data flush (Service Fabric UploadChunk, a Graph uploadUrl segment, a Blob Put Block, a tus PATCH).

The server runs in this process (httpx drives the real ASGI app, lifespan included) so the store's own
transaction and commit counters can be read. Write transactions are the commits the store reports
(``on_commit``, what ``chunkd_metadata_commits_total`` counts), checked against the database:
``pg_snapshot_xmax(pg_current_snapshot())`` moves once per transaction that writes (the statistics
counters lag by seconds), so it can only be larger -- by what other tests on the same cluster write at the
same moment, which is why it is a bound and not the figure (under ``pytest -n 2`` every chunk of a sample
once shared the cluster with another file's writes). Flushes are the fdatasync/fsync calls made while
the chunk is served, round trips the statements, batches and commits psycopg sends.

A pooled connection is checked before use only once it sat idle (``_sql_base._pinged_when_idle``): one in
steady use costs no ping, and one the server dropped while it sat in the pool is replaced before a request's
transaction runs on it.
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

from chunkd.metadata import _sql_base
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
        self.round_trips = 0
        self.commits = 0
        lock = threading.Lock()
        reported = store.on_commit

        def committed() -> None:
            with lock:
                self.commits += 1
            if reported is not None:
                reported()

        monkeypatch.setattr(store, "on_commit", committed)
        # every statement, batch and commit any psycopg connection of this process sends (pings included):
        # each is one round trip to the database
        # (``BaseConnection._exec_command`` sends the BEGIN and COMMIT psycopg issues itself, one each)
        from psycopg._connection_base import BaseConnection

        for cls, name in ((psycopg.Cursor, "execute"), (psycopg.Cursor, "executemany"),
                          (BaseConnection, "_exec_command")):
            real_method = getattr(cls, name)

            def trip(obj: Any, *args: Any, _real: Any = real_method, **kwargs: Any) -> Any:
                with lock:
                    self.round_trips += 1
                return _real(obj, *args, **kwargs)

            monkeypatch.setattr(cls, name, trip)
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

    async def cost(self, request: Callable[[], Awaitable[None]]) -> tuple[int, int, int, int]:
        """(write transactions, all transactions, flushes, round trips to the database) of one request."""
        x0 = self.xmax()
        t0, f0, r0, c0 = self.store.transactions, self.flushes, self.round_trips, self.commits
        await request()
        t1, f1, r1, c1 = self.store.transactions, self.flushes, self.round_trips, self.commits
        ids = self.xmax() - x0
        assert ids >= c1 - c0, (ids, c1 - c0)  # each reported commit took a transaction id: it wrote
        return c1 - c0, t1 - t0, f1 - f0, r1 - r0


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


def check(costs: list[tuple[int, int, int, int]], round_trips: int) -> None:
    assert all(1 <= c[0] <= 2 for c in costs), costs
    assert max(c[1] for c in costs) <= 2, costs
    assert max(c[2] for c in costs) <= 1, costs
    # each round trip costs this process CPU (psycopg, the socket) and the chunk a wait: bench/README.md
    # tracks them for PostgreSQL (23 per tus chunk once, BEGINs counted: a ping per transaction, the row
    # lock apart from the row, a growing range deleted and inserted again; 18 until the statements of a
    # transaction went out together, metadata/_pg_txn.py: claim and record two each; 4 until a small chunk
    # was claimed, written and recorded in one transaction, metadata/_pg_held.py)
    assert max(c[3] for c in costs) <= round_trips, costs


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
    check([await meter.cost(lambda i=i: put(i)) for i in range(1, CHUNKS)], 2)


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
    check([await meter.cost(lambda i=i: patch(i)) for i in range(1, CHUNKS)], 2)


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
    check([await meter.cost(lambda i=i: put(i)) for i in range(1, CHUNKS)], 3)


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
    check([await meter.cost(lambda i=i: put(i)) for i in range(1, CHUNKS)], 9)


# -- pooled connections --------------------------------------------------------------------------
async def _tus_upload(served: Served, chunks: int) -> tuple[str, bytes]:
    client, _ = served
    data = os.urandom(CHUNK * chunks)
    r = await client.post("/files/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(len(data))})
    assert r.status_code == 201, r.text
    return r.headers["location"], data


async def _patch(served: Served, path: str, data: bytes, i: int) -> int:
    client, _ = served
    r = await client.patch(path, content=data[i * CHUNK:(i + 1) * CHUNK],
                           headers={"Tus-Resumable": "1.0.0", "Upload-Offset": str(i * CHUNK),
                                    "Content-Type": "application/offset+octet-stream"})
    return r.status_code


def _end_backends(served: Served) -> None:
    """End the database's other backends (chunkd's pooled connections), as a restart or an idle timeout would."""
    ended = served[1].pg.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                 "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()
    assert ended is not None and ended[0] >= 1


def _count_pings(served: Served, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    dialect = served[1].store._writer.dialect
    pings = [0]
    real = dialect.do_ping

    def counted(conn: Any) -> bool:
        pings[0] += 1
        return bool(real(conn))

    monkeypatch.setattr(dialect, "do_ping", counted)
    return pings


@pytest.mark.anyio
async def test_connections_in_use_are_not_pinged(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    path, data = await _tus_upload(served, 6)
    assert await _patch(served, path, data, 0) == 204
    pings = _count_pings(served, monkeypatch)
    for i in range(1, 6):
        assert await _patch(served, path, data, i) == 204
    assert pings[0] == 0
    monkeypatch.setattr(_sql_base, "IDLE_PING", 0.0)  # every pooled connection now counts as idle
    r = await served[0].head(path, headers={"Tus-Resumable": "1.0.0"})
    assert r.status_code == 200 and r.headers["upload-offset"] == str(6 * CHUNK)
    assert pings[0] >= 1


@pytest.mark.anyio
async def test_a_connection_the_server_dropped_is_replaced(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    path, data = await _tus_upload(served, 3)
    assert await _patch(served, path, data, 0) == 204
    _end_backends(served)
    pings = _count_pings(served, monkeypatch)
    monkeypatch.setattr(_sql_base, "IDLE_PING", 0.0)  # they sat in the pool meanwhile
    assert await _patch(served, path, data, 1) == 204
    assert await _patch(served, path, data, 2) == 204
    assert pings[0] >= 2
    r = await served[0].get(path, headers={"Tus-Resumable": "1.0.0"})
    assert r.status_code == 200 and r.content == data


@pytest.mark.anyio
async def test_a_dropped_connection_in_use_is_a_503_and_the_retry_succeeds(served: Served,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the idle check (a connection used a moment ago), the request that meets a dropped connection
    gets the protocol's 503 with a retry hint, not a 500; the pool replaces the connection and a retry of
    the same chunk succeeds."""
    path, data = await _tus_upload(served, 2)
    assert await _patch(served, path, data, 0) == 204
    _end_backends(served)
    monkeypatch.setattr(_sql_base, "IDLE_PING", 1e9)
    client = served[0]
    headers = {"Tus-Resumable": "1.0.0", "Upload-Offset": str(CHUNK), "Content-Type": "application/offset+octet-stream"}
    statuses = []
    for _ in range(25):  # each dead pooled connection fails one request, then is replaced
        r = await client.patch(path, content=data[CHUNK:], headers=headers)
        statuses.append(r.status_code)
        if r.status_code == 204:
            break
        assert r.status_code == 503, r.text
        assert "retry-after" in r.headers
    assert statuses[0] == 503 and statuses[-1] == 204, statuses
    r = await client.get(path, headers={"Tus-Resumable": "1.0.0"})
    assert r.status_code == 200 and r.content == data

