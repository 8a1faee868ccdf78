"""Two server processes on one data directory take interleaved chunks of the same session in parallel.

No state lives in one process's memory: the sessions' ranges and the writers' claims are coordinated
through SQLite, the bytes go to one staged file. The committed file must be byte-identical and no
request may fail (SQLite lock contention must not surface as a 5xx).
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.serverproc import ServerProcess

pytestmark = pytest.mark.slow

CHUNK = 256 * 1024
N = 64
SIZE = N * CHUNK - 12345
THREADS = 6


def span(i: int) -> tuple[int, int]:
    return i * CHUNK, min((i + 1) * CHUNK, SIZE)


def upload_interleaved(urls: list[str], token: str, path: str, data: bytes, *, overlap: bool) -> str:
    """Send every chunk (random order, THREADS threads) to ``urls[i % len(urls)]``; with ``overlap`` also
    send each chunk a second time to the other server (a client retry racing the original)."""
    sid = str(uuid.uuid4())
    jobs = [(i, i % len(urls)) for i in range(N)]
    if overlap:
        jobs += [(i, (i + 1) % len(urls)) for i in range(0, N, 4)]
    random.shuffle(jobs)
    local = threading.local()
    statuses: list[int] = []
    opened: list[httpx.Client] = []

    def send(job: tuple[int, int]) -> None:
        i, server = job
        if not hasattr(local, "clients"):
            local.clients = [httpx.Client(base_url=u, headers={"Authorization": f"Bearer {token}"}, timeout=60)
                             for u in urls]
            opened.extend(local.clients)
        start, end = span(i)
        r = local.clients[server].put(f"/ImageStore/{path}/$/UploadChunk?api-version=6.0&session-id={sid}",
                                      content=data[start:end],
                                      headers={"Content-Range": f"bytes {start}-{end - 1}/{SIZE}"})
        statuses.append(r.status_code)
        assert r.status_code == 200, r.text

    try:
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(send, jobs))
    finally:
        for client in opened:
            client.close()
    assert statuses == [200] * len(jobs)
    return sid


def check_commit(urls: list[str], token: str, path: str, sid: str, data: bytes) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    for url in urls:  # every process sees the same, complete session
        got = httpx.get(f"{url}/ImageStore/$/GetUploadSession?api-version=6.0&session-id={sid}", headers=headers)
        assert got.status_code == 200 and got.json()["UploadSessions"][0]["ExpectedRanges"] == [], got.text
    r = httpx.post(f"{urls[0]}/ImageStore/$/CommitUploadSession?api-version=6.0&session-id={sid}", headers=headers)
    assert r.status_code == 200, r.text
    # committing again through the other process is the runtime's idempotent 200
    r = httpx.post(f"{urls[-1]}/ImageStore/$/CommitUploadSession?api-version=6.0&session-id={sid}", headers=headers)
    assert r.status_code == 200, r.text
    for url in urls:
        body = httpx.get(f"{url}/ImageStore/{path}/$/Content?api-version=6.0", headers=headers, timeout=60).content
        assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Like the ``serve`` fixture, with a start-up allowance for worker processes on a busy 2-core machine."""
    started: list[ServerProcess] = []

    def run(*args: str, data_dir: Path | None = None) -> ServerProcess:
        server = ServerProcess(data_dir or tmp_path / "data", list(args))
        started.append(server)
        return server.start(timeout=120)

    yield run
    for server in started:
        server.stop()


def test_two_servers_on_one_data_dir(start: Callable[..., ServerProcess]) -> None:
    first = start()
    second = start(data_dir=first.data_dir)
    token = first.token()
    urls = [first.url, second.url]
    # a fresh store: the root listing is 200 with empty lists (the runtime answers 204 with no body)
    root = httpx.get(f"{second.url}/ImageStore?api-version=6.0", headers={"Authorization": f"Bearer {token}"})
    assert root.status_code == 200 and root.json() == {"StoreFiles": [], "StoreFolders": []}
    data = os.urandom(SIZE)
    sid = upload_interleaved(urls, token, "two/app.bin", data, overlap=True)
    check_commit(urls, token, "two/app.bin", sid, data)
    for server in (first, second):
        assert " 500 " not in server.log() and "Traceback" not in server.log()


def test_one_server_with_two_workers(start: Callable[..., ServerProcess]) -> None:
    server = start("--workers", "2")
    token = server.token()
    data = os.urandom(SIZE)
    # several clients per thread -> many connections, which the two workers accept between them
    sid = upload_interleaved([server.url, server.url], token, "workers/app.bin", data, overlap=True)
    check_commit([server.url], token, "workers/app.bin", sid, data)
    assert "Traceback" not in server.log()
