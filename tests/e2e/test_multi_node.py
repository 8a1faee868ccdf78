"""Three stateless chunkd nodes on one PostgreSQL database and one object store (moto, Azurite), with separate data
directories (as three machines would have): a Service Fabric upload and a tus upload send their chunks
round-robin across the nodes, one node is killed with SIGKILL in the middle of a chunk, the uploads
finish through the other two (a retry takes the dead node's claim over within its lease), the
downloads are byte-for-byte equal through any node, and no data directory holds object bytes."""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests import azurite
from tests.conformance.metadata_suite import PG_ADMIN, pg_url
from tests.serverproc import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
CHUNK = 512 * 1024
STEPS = 9
SIZE = STEPS * CHUNK - 12345  # a short last chunk
KILLED_AT = 4  # the step whose chunks go to the node that dies with them half sent
TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture
def database() -> Iterator[str]:
    import psycopg

    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True)
    except Exception as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is required in CI: {exc}")
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}")
    name = f"chunkd_nodes_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield pg_url(name)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def azure_store() -> tuple[str, dict[str, str]]:
    return azurite.storage_url(f"nodes{secrets.token_hex(4)}"), {"AZURE_STORAGE_KEY": azurite.KEY}


def s3_store() -> tuple[str, dict[str, str]]:
    from tests.conformance.s3moto import moto

    return moto().url(f"nodes{secrets.token_hex(4)}"), {}


STORES: dict[str, Callable[[], tuple[str, dict[str, str]]]] = {"azure": azure_store, "s3": s3_store}


def _half_sent(node: ServerProcess, head: str, body: bytes) -> socket.socket:
    """A request whose head and first half of the body reached ``node``; the rest never comes."""
    sock = socket.create_connection(("127.0.0.1", node.port))
    sock.sendall(head.encode() + body[: len(body) // 2])
    return sock


@pytest.mark.parametrize("store", sorted(STORES))
def test_three_nodes_one_dies_mid_upload(tmp_path: Path, database: str, store: str) -> None:
    url, env = STORES[store]()
    shared = ["--metadata", database, "--storage", url]
    nodes = [ServerProcess(tmp_path / f"node{i}", shared, env).start(timeout=90) for i in range(3)]
    try:
        token = subprocess.run([sys.executable, "-m", "chunkd.cli.main", "token", "--data-dir", str(tmp_path / "cli"),
                                "--metadata", database], check=True, capture_output=True, text=True).stdout.strip()
        auth = {"Authorization": f"Bearer {token}"}
        _uploads(nodes, auth)
    finally:
        for n in nodes:
            n.stop()
    for i, n in enumerate(nodes):
        assert " 500 " not in n.log() and "Traceback" not in n.log(), f"node {i}:\n{n.log()}"
        held = sum(p.stat().st_size for p in (tmp_path / f"node{i}" / "store").rglob("*") if p.is_file())
        assert held == 0, f"node {i} keeps object bytes in its data directory"


def _uploads(nodes: list[ServerProcess], auth: dict[str, str]) -> None:
    sf_data, tus_data = os.urandom(SIZE), os.urandom(SIZE)
    sid = str(uuid.uuid4())
    chunk = f"/ImageStore/nodes/pkg.bin/$/UploadChunk?api-version=6.0&session-id={sid}"
    created = httpx.post(f"{nodes[0].url}/files/", headers={**auth, **TUS, "Upload-Length": str(SIZE)})
    assert created.status_code == 201, created.text
    upload = "/files/" + created.headers["location"].rsplit("/", 1)[1]
    alive = [0, 1, 2]
    pending: list[int] = []
    for step in range(STEPS):
        a, b = step * CHUNK, min((step + 1) * CHUNK, SIZE)
        node = nodes[alive[step % len(alive)]]
        if step == KILLED_AT:
            victim = nodes[1]
            token = auth["Authorization"]
            sf_head = (f"PUT {chunk} HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n"
                       f"Content-Range: bytes {a}-{b - 1}/{SIZE}\r\nContent-Length: {b - a}\r\n\r\n")
            tus_head = (f"PATCH {upload} HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\nTus-Resumable: 1.0.0\r\n"
                        f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: {a}\r\n"
                        f"Content-Length: {b - a}\r\n\r\n")
            socks = [_half_sent(victim, sf_head, sf_data[a:b]), _half_sent(victim, tus_head, tus_data[a:b])]
            time.sleep(0.5)  # both requests hold their claims now
            victim.kill()
            for s in socks:
                s.close()
            alive.remove(1)
            pending.append(step)
            node = nodes[alive[step % len(alive)]]
        started = time.monotonic()
        r = httpx.put(node.url + chunk, content=sf_data[a:b], timeout=60,
                      headers={**auth, "Content-Range": f"bytes {a}-{b - 1}/{SIZE}"})
        assert r.status_code == 200, (step, r.text)
        offset = int(httpx.head(node.url + upload, headers={**auth, **TUS}).headers["upload-offset"])
        assert offset == a  # the dead node recorded nothing of its half chunk
        r = httpx.patch(node.url + upload, content=tus_data[a:b], timeout=60, headers={
            **auth, **TUS, "Upload-Offset": str(a), "Content-Type": "application/offset+octet-stream"})
        assert r.status_code == 204, (step, r.text)
        if step in pending:
            assert time.monotonic() - started < 10, "the dead node's claims were not taken over within a lease"
    commit = f"/ImageStore/$/CommitUploadSession?api-version=6.0&session-id={sid}"
    assert httpx.post(nodes[2].url + commit, headers=auth, timeout=60).status_code == 200
    for n in (nodes[0], nodes[2]):  # every node reads what any node wrote
        got = httpx.get(f"{n.url}/ImageStore/nodes/pkg.bin/$/Content?api-version=6.0", headers=auth, timeout=60)
        assert got.status_code == 200 and hashlib.sha256(got.content).digest() == hashlib.sha256(sf_data).digest()
        got = httpx.get(n.url + upload, headers=auth, timeout=60)
        assert got.status_code == 200 and hashlib.sha256(got.content).digest() == hashlib.sha256(tus_data).digest()
