"""``/metrics`` of a real ``chunkd serve --workers 2``: the counters of both workers add up in every scrape,
whichever worker answers it; and a loopback server with ``--metrics auth`` refuses scrapes without an
admin token."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from tests.serverproc import ServerProcess

CHUNK = 64 * 1024
TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("metrics") / "data", ["--workers", "2"]).start(timeout=120)
    yield proc
    proc.stop()


def fresh(server: ServerProcess, token: str = "") -> httpx.Client:
    """A client whose every request opens a new connection, so requests spread over both workers."""
    headers = {"Connection": "close", **({"Authorization": f"Bearer {token}"} if token else {})}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30,
                        limits=httpx.Limits(max_keepalive_connections=0))


def scrape(server: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of one scrape, parsed by prometheus_client's own parser: (name, labels) -> value."""
    with fresh(server) as c:
        r = c.get("/metrics")  # loopback, --metrics auto: no credential needed
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def pids_that_counted(data_dir: Path, server: ServerProcess) -> set[str]:
    """Worker pids whose own counter file holds tus PATCH requests (the files are per process)."""
    found = set()
    for path in glob.glob(str(data_dir / ".metrics" / f"127.0.0.1-{server.port}" / "counter_*.db")):
        for key, val, *_ in MmapedDict.read_all_values_from_file(path):
            if "chunkd_requests_total" in key and "PATCH" in key and val > 0:
                found.add(os.path.basename(path))
    return found


def test_counters_add_up_across_two_workers(server: ServerProcess) -> None:
    token = server.token()
    before = scrape(server)
    assert value(before, "chunkd_workers") == 2

    # tus: 8 PATCHes of 64 KiB, each on a new connection
    tus_size = 8 * CHUNK
    data = os.urandom(tus_size)
    with fresh(server, token) as c:
        r = c.post("/files/", headers={**TUS, "Upload-Length": str(tus_size)})
        assert r.status_code == 201, r.text
        upload = r.headers["location"]
        for i in range(8):
            r = c.patch(upload, content=data[i * CHUNK:(i + 1) * CHUNK],
                        headers={**TUS, "Upload-Offset": str(i * CHUNK),
                                 "Content-Type": "application/offset+octet-stream"})
            assert r.status_code == 204, r.text
    # Service Fabric: 4 chunks, chunk 1 sent twice (a client retry), then commit
    sf_size = 4 * CHUNK
    blob = os.urandom(sf_size)
    sid = str(uuid.uuid4())
    chunk_url = f"/ImageStore/metrics/app.bin/$/UploadChunk?api-version=6.0&session-id={sid}"
    with fresh(server, token) as c:
        for i in (0, 1, 2, 1, 3):
            r = c.put(chunk_url, content=blob[i * CHUNK:(i + 1) * CHUNK],
                      headers={"Content-Range": f"bytes {i * CHUNK}-{(i + 1) * CHUNK - 1}/{sf_size}"})
            assert r.status_code == 200, r.text
        r = c.post(f"/ImageStore/$/CommitUploadSession?api-version=6.0&session-id={sid}")
        assert r.status_code == 200, r.text
        assert c.get("/ImageStore/metrics/app.bin/$/Content?api-version=6.0").content == blob

    # Both workers took PATCHes, or the sums below would prove nothing: send more until they have.
    data_dir = server.data_dir
    extra = 0
    while len(pids_that_counted(data_dir, server)) < 2 and extra < 40:
        with fresh(server, token) as c:
            r = c.patch(upload, content=b"", headers={**TUS, "Upload-Offset": str(tus_size),
                                                      "Content-Type": "application/offset+octet-stream"})
        extra += 1
    assert len(pids_that_counted(data_dir, server)) == 2

    def delta(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
        return value(samples, name, **labels) - value(before, name, **labels)

    for _ in range(4):  # whichever worker answers, the totals are the same
        now = scrape(server)
        assert delta(now, "chunkd_received_bytes_total", family="tus") == tus_size
        assert delta(now, "chunkd_new_bytes_total", family="tus") == tus_size
        assert delta(now, "chunkd_received_bytes_total", family="sf") == sf_size + CHUNK
        assert delta(now, "chunkd_new_bytes_total", family="sf") == sf_size
        assert delta(now, "chunkd_duplicate_bytes_total", family="sf") == CHUNK
        assert delta(now, "chunkd_sessions_committed_total", family="tus") == 1
        assert delta(now, "chunkd_sessions_committed_total", family="sf") == 1
        assert delta(now, "chunkd_requests_total", family="tus", operation="PATCH /{upload_id}",
                     status="204") >= 8
        assert delta(now, "chunkd_requests_total", family="sf", status="200",
                     operation="PUT /ImageStore/{content:sfactionprefix}$/UploadChunk") == 5
        assert delta(now, "chunkd_chunk_duration_seconds_count", family="sf") == 5
        assert delta(now, "chunkd_flush_duration_seconds_count") >= 12  # one piece per new chunk
        assert value(now, "chunkd_sessions_open", family="tus") == 0
        assert value(now, "chunkd_workers") == 2


def test_a_loopback_server_with_metrics_auth_wants_an_admin_token(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "data", ["--host", "127.0.0.1", "--metrics", "auth"]).start(timeout=120)
    try:
        assert httpx.get(proc.url + "/metrics").status_code == 401
        reader = proc.token("--roles", "ImageStore.Read")
        r = httpx.get(proc.url + "/metrics", headers={"Authorization": f"Bearer {reader}"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "accessDenied"
        r = httpx.get(proc.url + "/metrics", headers={"Authorization": f"Bearer {proc.token()}"})
        assert r.status_code == 200 and "chunkd_requests_total" in r.text
    finally:
        proc.stop()


def workers_of(server: ServerProcess) -> set[int]:
    """uvicorn's worker processes (spawned children running spawn_main), not its resource tracker."""
    assert server.proc is not None
    pids: set[int] = set()
    for task in Path(f"/proc/{server.proc.pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"spawn_main" in cmdline:
                pids.add(int(child))
    return pids


def test_a_killed_worker_keeps_its_counts_and_leaves_the_worker_gauge(server: ServerProcess) -> None:
    before = scrape(server)
    old = workers_of(server)
    assert len(old) == 2
    victim = min(old)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 90  # uvicorn replaces it; the new worker imports chunkd on a busy machine
    while time.monotonic() < deadline:
        now_workers = workers_of(server)
        if len(now_workers) == 2 and victim not in now_workers:
            try:
                if value(scrape(server), "chunkd_workers") == 2:
                    break
            except httpx.TransportError:
                pass
        time.sleep(0.5)
    after = scrape(server)
    assert value(after, "chunkd_workers") == 2  # the dead worker's share was dropped, the new one's added
    # what the dead worker counted stays in the sums (after the first test both workers counted PATCHes)
    for name, labels in before:
        if name.endswith("_total"):
            assert after[(name, labels)] >= before[(name, labels)], name
    assert value(after, "chunkd_new_bytes_total", family="tus") == value(before, "chunkd_new_bytes_total",
                                                                         family="tus")


def listeners_of(pid: int, port: int) -> set[int]:
    """Inodes of the listening TCP sockets on ``port`` that process ``pid`` holds open."""
    listening = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:  # 0A: TCP_LISTEN
            listening.add(int(fields[9]))
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and int(target[8:-1]) in listening:
            held.add(int(target[8:-1]))
    return held


def test_each_worker_listens_on_a_socket_of_its_own_also_after_a_restart(server: ServerProcess) -> None:
    """--workers 2 binds one SO_REUSEPORT socket per worker (server/listeners.py): the kernel spreads new
    connections over the workers instead of one worker accepting them all. Runs after the kill above, so the
    replacement must have taken the dead worker's socket, or connections hashed to it would never be served."""
    assert server.proc is not None
    supervisor = listeners_of(server.proc.pid, server.port)
    assert len(supervisor) == 2  # bound before any worker started, kept for the replacements
    owned = [listeners_of(pid, server.port) for pid in workers_of(server)]
    assert sorted(len(socks) for socks in owned) == [1, 1]
    assert set.union(*owned) == supervisor
    with fresh(server) as c:  # 40 new connections, from 40 source ports: both sockets get some
        for _ in range(40):
            assert c.get("/healthz").status_code == 200


def test_a_second_server_with_workers_cannot_join_the_port(server: ServerProcess, tmp_path: Path) -> None:
    """SO_REUSEPORT would let a second ``--workers 2`` server of the same user bind the same port and take a
    share of the first one's connections; it must fail to start instead, as with one worker."""
    out = subprocess.run([sys.executable, "-m", "chunkd.cli.main", "serve", "--port", str(server.port),
                          "--data-dir", str(tmp_path / "data"), "--workers", "2"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode != 0
    assert "cannot listen on" in out.stderr
